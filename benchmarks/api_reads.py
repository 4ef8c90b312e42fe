"""API reads per minute of a study whose trials train in flow runs of their own (`trial_deployment`).

Counted where they arrive: the bench runs its own Prefect server, whose ASGI app is wrapped
so that every flow-run read it receives (`GET /api/flow_runs/<id>`, `POST
/api/flow_runs/filter`) is written to a file with its time and the flow-run ids it names.
A study of the `digits-demo` deployment trains 1, then 4 trials at once, each in a run
of the `train-trial` deployment on a process worker; once every trial has stored an
epoch, the reads that name the study's run or one of its trial runs during a fixed window
are counted. The worker's own reads (its polls name no flow run) are reported beside them,
not in the figure. The study is then paused the way the UI's button does; measured beside
it: when every trial run saw the pause (the line each logs to its run) and when the last
one ended (its final state), after the click.

    python -m benchmarks.api_reads serve --port P --log PATH   # the counting server
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from datetime import datetime, timezone
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

STUDY_DEPLOYMENT = "pausable-study/digits-demo"
TRIAL_DEPLOYMENT = "pausable-trial/train-trial"
_RUN_PATH = re.compile(r"/api/flow_runs/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class CountingApp:
    """An ASGI app around Prefect's: writes one JSON line per flow-run read it receives."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], log: Path) -> None:
        self.app = app
        self.log = open(log, "a", buffering=1)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        method, path = scope["method"], scope["path"]
        if method == "GET" and (match := _RUN_PATH.fullmatch(path)):
            self._write(method, path, [match.group(1)])
        elif method == "POST" and path == "/api/flow_runs/filter":
            received = []
            while True:  # read the body to see which runs it names, then hand it on unchanged
                message = await receive()
                received.append(message)
                if message["type"] != "http.request" or not message.get("more_body", False):
                    break
            body = b"".join(m.get("body", b"") for m in received)
            self._write(method, path, _UUID.findall(body.decode(errors="replace")))
            replay = iter(received)

            async def receive_again() -> Message:
                return next(replay, None) or await receive()

            return await self.app(scope, receive_again, send)
        return await self.app(scope, receive, send)

    def _write(self, method: str, path: str, ids: list[str]) -> None:
        self.log.write(json.dumps({"t": time.time(), "method": method, "path": path, "ids": ids}) + "\n")


def serve(port: int, log: Path) -> None:
    """What `prefect server start` runs (API, UI, services), with the reads counted."""
    import uvicorn
    from prefect.server.api.server import create_app

    uvicorn.run(CountingApp(create_app(final=True), log), host="127.0.0.1", port=port, log_level="warning")


def _counting_stack(home: Path) -> Any:
    """A `LocalPrefect` whose server is the counting one; the plugin's poll settings at their defaults."""
    from deployments.local_stack import LocalPrefect

    class CountingPrefect(LocalPrefect):
        reads_log = home / "flow-run-reads.jsonl"

        def server_command(self) -> list[str]:
            return ["benchmarks.api_reads", "serve", "--port", str(self.port), "--log", str(self.reads_log)]

        def start(self, timeout: float = 180) -> None:  # a loaded machine starts it slowly
            super().start(timeout)

    stack = CountingPrefect(home, worker_poll_seconds=2)
    for name in [n for n in stack.env if n.startswith("INTERMISSION_")]:
        del stack.env[name]  # the figure is for the defaults a user gets
    return stack


def _reads(log: Path, ids: set[str], start: float, end: float) -> tuple[int, int]:
    """(reads naming one of `ids`, all flow-run reads) received between `start` and `end`."""
    mine = every = 0
    for line in log.read_text().splitlines():
        record = json.loads(line)
        if start <= record["t"] < end:
            every += 1
            mine += bool(ids & set(record["ids"]))
    return mine, every


def _trial_runs(study_name: str) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags

    with get_client(sync_client=True) as client:
        return client.read_flow_runs(
            flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[f"study:{study_name}"]))
        )


def _one_study(stack: Any, workdir: Path, n_trials: int, window_s: float) -> dict[str, Any]:
    """Reads per minute of one study with `n_trials` trial runs training, and its pause."""
    import optuna

    from benchmarks.latency import _log_time as log_time
    from deployments.ui_actions import start_deployment_run, ui_pause, wait_for

    name = f"api-reads-{n_trials}"
    storage = f"sqlite:///{workdir / f'{name}.db'}"
    run = start_deployment_run(STUDY_DEPLOYMENT, {
        "study_name": name, "objective": "flows.digits:objective", "storage": storage,
        "checkpoints": str(workdir / "checkpoints"), "n_trials": n_trials, "max_epochs": 10_000,
        "max_concurrent_trials": n_trials, "seed": 0, "trial_deployment": TRIAL_DEPLOYMENT,
    })

    def all_training() -> list[Any] | None:
        try:
            trials = optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
        except KeyError:  # not created yet
            return None
        training = [t for t in trials if t.state == optuna.trial.TrialState.RUNNING and t.intermediate_values]
        return trials if len(training) == n_trials else None

    wait_for(all_training, timeout=600, what=f"{n_trials} trial run(s) to train")
    start = time.time()
    time.sleep(window_s)
    end = time.time()

    paused_at = datetime.now(timezone.utc)
    ui_pause(run.id)

    def all_stopped() -> list[Any] | None:
        runs = _trial_runs(name)
        return runs if runs and all(r.state is not None and r.state.is_final() for r in runs) else None

    stopped = wait_for(all_stopped, timeout=600, what="every trial run to stop")
    # When each trial run's process saw the pause: the line its watcher logs to the run.
    seen_s = max(
        (log_time(r.id, r"Pause requested \(", after=paused_at) - paused_at).total_seconds() for r in stopped
    )
    stopped_s = max((r.state.timestamp - paused_at).total_seconds() for r in stopped)
    ids = {str(run.id), *(str(r.id) for r in stopped)}
    mine, every = _reads(stack.reads_log, ids, start, end)
    return {
        "reads_per_minute": mine * 60 / (end - start),
        "all_flow_run_reads_per_minute": every * 60 / (end - start),
        "trial_runs_saw_pause_s": seen_s,
        "trial_runs_stopped_after_pause_s": stopped_s,
        "window_s": end - start,
    }


def measure(workdir: Path, *, window_s: float) -> dict[str, Any]:
    """The figure: API reads per minute of a study with 1 and with 4 trial runs in flight."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    workdir.mkdir(parents=True, exist_ok=True)
    stack = _counting_stack(workdir / "prefect-home")
    with stack, temporary_settings({PREFECT_API_URL: stack.api_url}):
        stack.deploy("digits-demo", "train-trial")
        stack.start_worker("api-reads-worker")  # every queue, as many runs as come
        one = _one_study(stack, workdir, 1, window_s)
        four = _one_study(stack, workdir, 4, window_s)
    return {
        "value": four["reads_per_minute"],
        "one_trial_run": one["reads_per_minute"],
        "four_trial_runs": four["reads_per_minute"],
        "per_added_trial_run": (four["reads_per_minute"] - one["reads_per_minute"]) / 3,
        "window_s": four["window_s"],
        "one": one,
        "four": four,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    server = commands.add_parser("serve", help="run the counting Prefect server")
    server.add_argument("--port", type=int, required=True)
    server.add_argument("--log", type=Path, required=True)
    alone = commands.add_parser("measure", help="measure the figure alone and print it")
    alone.add_argument("--window", type=float, default=60.0)
    alone.add_argument("--workdir", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.command == "serve":
        serve(args.port, args.log)
    else:
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        print(json.dumps(measure(args.workdir, window_s=args.window), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
