"""A pause within a long epoch, through the `digits-demo` deployment on a real Prefect server
and process worker: request → trial stopped → process gone (issue 13's and 16's figures).

A trial whose epoch takes `epoch_seconds` (60 s in `make bench`: 60 steps of about a second)
with `pause_granularity="step"` is paused `pause_after_seconds` (5 s) into its epoch the way
the UI's Pause button does. Every instant is observable from outside: this process's clock
around the UI's API call, the run's log lines in the Prefect API (stamped when the flow's
process wrote them), the run's states and their timestamps, and the flow's process
disappearing from /proc. Measured beside it in the same run: the objective's slowest step
(from its own step log) and a checkpoint write of the same model and optimizer state.

Prefect's exit is defined as the time from the run's Suspended state (set by the study once the
pause is recorded) to the process gone: Prefect's engine reporting the state and ending.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import optuna
import torch
from torch import nn
from torch.utils.data import TensorDataset

from prefect_intermission import TrialLoop

DEPLOYMENT = "pausable-study/digits-demo"
FEATURES, HIDDEN = 256, 1024  # about 1.3 M parameters: a 10 MB checkpoint with SGD momentum
#: `make bench`: a 60 s epoch paused 5 s in; `--tiny`: a 3.75 s epoch paused 1.5 s in.
SIZES = {
    "full": {"steps_per_epoch": 60, "step_seconds": 1.0, "pause_after_seconds": 5.0},
    "tiny": {"steps_per_epoch": 15, "step_seconds": 0.25, "pause_after_seconds": 1.5},
}


def _model() -> nn.Module:
    return nn.Sequential(nn.Linear(FEATURES, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, 1))


def objective(trial: optuna.Trial, loop: TrialLoop) -> float:
    """An MLP whose steps are stretched to `step_seconds`; logs each step's start and end to
    `steps_file` (one JSON line each), so the bench knows when the epoch began and how long a step took."""
    params = loop.objective_params
    step_seconds, steps, path = float(params["step_seconds"]), int(params["steps_per_epoch"]), params["steps_file"]
    lr = trial.suggest_float("lr", 1e-3, 1e-1, log=True)
    model = _model()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    data = torch.Generator().manual_seed(0)
    x = torch.randn(steps * 16, FEATURES, generator=data)
    loader = loop.data_loader(TensorDataset(x, x.sum(dim=1, keepdim=True)), batch_size=16, shuffle=True)
    with open(path, "a", buffering=1) as log:
        for _epoch in loop.epochs(model, optimizer):
            for xb, yb in loader:
                started = time.time()
                optimizer.zero_grad()
                nn.functional.mse_loss(model(xb), yb).backward()
                optimizer.step()
                time.sleep(max(0.0, step_seconds - (time.time() - started)))
                log.write(json.dumps({"start": started, "end": time.time()}) + "\n")
                loop.step()  # a pause stops the trial here
            loop.end_epoch(float(nn.functional.mse_loss(model(x), x.sum(dim=1, keepdim=True))))
    return loop.best_metric if loop.best_metric is not None else float("nan")


def _checkpoint_write_s(folder: Path) -> float:
    """One checkpoint write of a state like the trial's (model, optimizer, loop counters), through the store."""
    from prefect_intermission import CheckpointStore

    model = _model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model(torch.randn(16, FEATURES)).sum().backward()
    optimizer.step()  # the momentum buffers exist, as in the trial's checkpoint
    state = {"components": {"model": model.state_dict(), "optimizer": optimizer.state_dict()}, "epoch": -1}
    trial = CheckpointStore(str(folder)).for_trial("write-time", 0)
    trial.save(0, state, mid_epoch=True)  # warm-up: folders made, code paths loaded
    times = []
    for _ in range(3):
        start = time.perf_counter()
        trial.save(0, state, mid_epoch=True)
        times.append(time.perf_counter() - start)
    return min(times)


def measure(workdir: Path, *, steps_per_epoch: int, step_seconds: float, pause_after_seconds: float) -> dict[str, Any]:
    """Pause a trial `pause_after_seconds` into an epoch of `steps_per_epoch` steps of `step_seconds`; time it."""
    from prefect.client.orchestration import get_client

    from benchmarks.latency import _gone, _log_time, _pid, now
    from deployments.ui_actions import policy_waiting_for_resume, start_deployment_run, ui_pause, wait_for
    from prefect_intermission.pausing.run_states import FLOW_PAUSE_KEY_PREFIX

    workdir.mkdir(parents=True, exist_ok=True)
    steps_file = workdir / "steps.jsonl"
    run = start_deployment_run(DEPLOYMENT, {
        "study_name": "long-epoch", "objective": "benchmarks.pause_stop:objective",
        "storage": f"sqlite:///{workdir / 'long-epoch.db'}", "checkpoints": str(workdir / "checkpoints"),
        "n_trials": 1, "max_epochs": 2, "max_concurrent_trials": 1, "seed": 0, "pruner": "none",
        "pause_granularity": "step", "pause_policy": policy_waiting_for_resume(),
        "objective_params": {"step_seconds": step_seconds, "steps_per_epoch": steps_per_epoch, "steps_file": str(steps_file)},
    })

    def first_step_start() -> float | None:
        lines = steps_file.read_text().splitlines() if steps_file.exists() else []
        return json.loads(lines[0])["start"] if lines else None

    epoch_started = wait_for(first_step_start, timeout=300, what="the trial's first step", every=0.05)
    pid = _pid(run.id)
    time.sleep(max(0.0, epoch_started + pause_after_seconds - time.time()))
    requested = now()
    ui_pause(run.id)  # as the UI's Pause button does
    wait_for(lambda: _gone(pid), timeout=120, what="the flow's process to exit", every=0.01)
    gone = now()
    stored = _log_time(run.id, r"Trial 0: checkpoint within epoch 1 of", requested)
    stopped = _log_time(run.id, r"Trial 0 paused: ", requested)
    with get_client(sync_client=True) as client:
        suspended = max(
            s.timestamp for s in client.read_flow_run_states(run.id)
            if s.name == "Suspended" and (s.state_details.pause_key or "").startswith(FLOW_PAUSE_KEY_PREFIX)
        )
    steps = [json.loads(line) for line in steps_file.read_text().splitlines()]
    step_s = max(s["end"] - s["start"] for s in steps)
    steps_in = int(re.search(r"(\d+) steps in", _paused_line(run.id)).group(1))
    write_s = _checkpoint_write_s(workdir / "write-time")
    seconds = lambda a, b: (b - a).total_seconds()  # noqa: E731
    prefect_exit_s = seconds(suspended, gone)
    return {
        "value": seconds(requested, stopped),
        "request_to_checkpoint_s": seconds(requested, stored),
        "request_to_exit_s": seconds(requested, gone),
        "stopped_to_suspended_s": seconds(stopped, suspended),
        "prefect_exit_s": prefect_exit_s,
        "step_s": step_s,
        "checkpoint_write_s": write_s,
        "epoch_s": steps_per_epoch * step_seconds,
        "paused_after_s": seconds_since(epoch_started, requested),
        "steps_into_epoch": steps_in,
        "stopped_allowance_s": 1 + step_s + write_s,
        "exit_allowance_s": 1 + step_s + write_s + prefect_exit_s,
    }


def seconds_since(epoch_time: float, instant: Any) -> float:
    """Seconds from a `time.time()` value to a timezone-aware datetime."""
    return instant.timestamp() - epoch_time


def _paused_line(flow_run_id: Any) -> str:
    from benchmarks.latency import _logs

    return next(log.message for log in _logs(flow_run_id) if "Trial 0 paused: " in log.message)


def checks(figure: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The two checks, each against its allowance measured in the same run."""
    stopped, exited = figure["value"], figure["request_to_exit_s"]
    return {
        "pause_to_stopped_s": {
            "value": stopped, "target": f"<= 1 + step + checkpoint write = {figure['stopped_allowance_s']:.2f}",
            "met": stopped <= figure["stopped_allowance_s"],
        },
        "step_pause_to_exit_s": {
            "value": exited,
            "target": f"<= 1 + step + checkpoint write + Prefect's exit = {figure['exit_allowance_s']:.2f}",
            "met": exited <= figure["exit_allowance_s"],
        },
    }


def row(figure: dict[str, Any], met: dict[str, dict[str, Any]]) -> list[tuple[str, ...]]:
    """The figure's rows of `make bench`'s table."""
    mark = lambda name: "yes" if met[name]["met"] else "**no**"  # noqa: E731
    f = figure
    return [
        ("pause_to_stopped_s", f"{f['value']:.2f}", "≤ 1 + step + write", mark("pause_to_stopped_s"),
         f"step {f['step_s']:.2f} s; checkpoint write {f['checkpoint_write_s'] * 1000:.0f} ms; paused {f['paused_after_s']:.1f} s "
         f"into a {f['epoch_s']:.0f} s epoch, stopped {f['steps_into_epoch']} steps in; checkpoint stored {f['request_to_checkpoint_s']:.2f} s after the request"),
        ("step_pause_to_exit_s", f"{f['request_to_exit_s']:.2f}", "≤ 1 + step + write + Prefect's exit", mark("step_pause_to_exit_s"),
         f"stopped→Suspended {f['stopped_to_suspended_s']:.2f} s; Prefect's exit (Suspended→process gone) {f['prefect_exit_s']:.2f} s"),
    ]
