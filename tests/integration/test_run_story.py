"""What a user sees of a pause through the Prefect API: the run's log tells its story, the
paused trials' task runs look paused, and the completion message goes out once the run is
Completed, so a late pause cannot catch it.

As in tests/integration/test_artifacts.py, each execution of a flow run is run in this process with
`run_flow`, against the real Prefect server of the `prefect_server` fixture.
"""

from __future__ import annotations

import contextvars
import logging
import re
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import optuna
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, LogFilter, LogFilterFlowRunId
from prefect.client.schemas.objects import StateType
from prefect.client.schemas.sorting import LogSort
from prefect.flow_engine import run_flow
from prefect.logging.handlers import APILogWorker
from prefect.states import Pending

from prefect_intermission.study.config import grouped_parameters
from prefect_intermission import PausePolicy, optimize_study
from tests.e2e.webhook import hanging_endpoint, webhook

pytestmark = pytest.mark.usefixtures("prefect_server")

MAX_EPOCHS = 4
PAUSE_EPOCH = 1  # trial 0 asks for the pause when it finished this epoch


def pause_at_epoch_of_trial(trial: int, epoch: int):
    """A pause rule: pause the study when trial `trial` finished epoch `epoch` (only then)."""
    return lambda context: (
        f"rule: trial {context.trial_number} finished epoch {context.epoch}"
        if context.trial_number == trial and context.epoch == epoch else None
    )


def _new_run(parameters: dict[str, Any]):
    with get_client(sync_client=True) as client:
        return client.create_flow_run(optimize_study, parameters=parameters, state=Pending())


def _execute_again(flow_run_id):
    """What a resume does: the same run, Pending again, executed from the top."""
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(flow_run_id, Pending(), force=True)
        return client.read_flow_run(flow_run_id)


def _logs(flow_run_id) -> list:
    """Every log line of the flow run (its tasks' included), oldest first, from the API."""
    APILogWorker.drain_all(timeout=10)
    logs: list = []
    with get_client(sync_client=True) as client:
        while True:
            page = client.read_logs(
                LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])),
                limit=200, offset=len(logs), sort=LogSort.TIMESTAMP_ASC,
            )
            logs.extend(page)
            if len(page) < 200:
                return logs


def _task_runs(flow_run_id) -> dict[str, list]:
    """The flow run's task runs by name, each list oldest first, from the API."""
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    by_name: dict[str, list] = {}
    for run in sorted(runs, key=lambda r: r.created):
        by_name.setdefault(run.name, []).append(run)
    return by_name


def _final_state(flow_run_id):
    with get_client(sync_client=True) as client:
        return client.read_flow_run(flow_run_id).state


# -- 1 and 2: a pause by rule while two trials train ------------------------------------------


@pytest.fixture(scope="module")
def paused_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One execution of a study with two trials training at once, paused by a rule at
    epoch PAUSE_EPOCH of trial 0: the run, its parameters and its return value."""
    tmp_path = tmp_path_factory.mktemp("story")
    name = f"story-{uuid.uuid4().hex[:6]}"
    parameters = grouped_parameters({
        "study_name": name, "objective": "tests.objectives:slow_classifier", "n_trials": 2,
        "max_epochs": MAX_EPOCHS, "storage": f"sqlite:///{tmp_path}/s.db",
        "checkpoints": str(tmp_path / "ckpt"), "seed": 3, "max_concurrent_trials": 2, "pruner": "none",
        "pause_rules": [{"rule": "tests.integration.test_run_story:pause_at_epoch_of_trial", "trial": 0, "epoch": PAUSE_EPOCH}],
    })
    flow_run = _new_run(parameters)
    started = time.monotonic()
    returned = run_flow(optimize_study, flow_run=flow_run, parameters=parameters)
    print(f"paused execution took {time.monotonic() - started:.1f} s")
    return {"flow_run": flow_run, "parameters": parameters, "returned": returned}


def _story(logs) -> str:
    return "\n".join(f"{log.timestamp.isoformat()} {log.message}" for log in logs)


def _announcement(logs) -> tuple[int, Any]:
    announced = [(i, log) for i, log in enumerate(logs) if log.message.startswith("Pause requested (")]
    assert len(announced) == 1, _story(logs)
    return announced[0]


def _paused_lines(logs) -> dict[int, tuple[int, int, int, str]]:
    """Trial number -> (position in the log, epochs done, epochs in all, checkpoint path)."""
    lines = {}
    for i, log in enumerate(logs):
        pattern = r"Trial (\d+) paused: (\d+) of (\d+) epochs done; checkpoint stored at (.+)\."
        if match := re.fullmatch(pattern, log.message):
            assert int(match[1]) not in lines, _story(logs)
            lines[int(match[1])] = (i, int(match[2]), int(match[3]), match[4])
    return lines


def test_the_runs_log_tells_the_story_of_a_pause(paused_run):
    assert paused_run["returned"]["status"] == "paused"
    assert _final_state(paused_run["flow_run"].id).name == "Paused"
    logs = _logs(paused_run["flow_run"].id)
    story = _story(logs)

    # The pause is announced, naming the trials still training, that stop at their next boundary ...
    position, announcement = _announcement(logs)
    prefix = f"Pause requested (rule: trial 0 finished epoch {PAUSE_EPOCH}): trials "
    suffix = (  # outside a deployment
        " stop at their next boundary (their next step where they can pause within an epoch, else the end "
        "of the epoch), then the run ends, paused."
    )
    assert announcement.message.startswith(prefix) and announcement.message.endswith(suffix), story
    named = announcement.message[len(prefix) : -len(suffix)].split(", ")
    paused_lines = _paused_lines(logs)
    assert sorted(paused_lines) == [0, 1], story
    still_training = [f"#{n}" for n, (i, *_) in sorted(paused_lines.items()) if i > position]
    assert still_training and set(still_training) <= set(named) <= {"#0", "#1"}, story

    # ... within 2 s of the epoch at which the rule fired.
    [fired] = [log for log in logs if log.message.startswith(f"Trial 0 finished epoch {PAUSE_EPOCH + 1} of {MAX_EPOCHS}:")]
    delay = announcement.timestamp - fired.timestamp
    assert timedelta(0) <= delay <= timedelta(seconds=2), (delay, story)

    # One line per paused trial, each naming a checkpoint that is on disk ...
    for number, (_, done, total, path) in paused_lines.items():
        assert total == MAX_EPOCHS
        assert 1 <= done < MAX_EPOCHS
        assert path.endswith(f"/trial-{number:05d}/epoch-{done - 1:05d}.pt"), path
        assert Path(path).is_file(), f"trial {number}'s checkpoint {path} is not on disk"
    assert paused_lines[0][1] == PAUSE_EPOCH + 1  # trial 0 stopped at the epoch the rule fired

    # ... and last, how to continue a run outside a deployment.
    study_paused = f"Study {paused_run['parameters']['study_name']!r} paused: "
    how = [
        i for i, log in enumerate(logs)
        if log.message.startswith(study_paused) and "This run is not part of a deployment" in log.message
    ]
    assert len(how) == 1, story
    assert how[0] > max(i for i, *_ in paused_lines.values()) and how[0] > position, story
    assert "continue it" in logs[how[0]].message, logs[how[0]].message


def test_the_pause_is_announced_before_any_trial_pauses_naming_them_all(paused_run):
    """As the documentation has it (docs/guides/notifications.md): "Pause requested (...): trials #0, #1 stop at their next boundary
    (...), then ...", said as the pause is asked, then one line per trial checkpointed."""
    logs = _logs(paused_run["flow_run"].id)
    position, announcement = _announcement(logs)
    assert announcement.message.endswith(": trials #0, #1 stop at their next boundary (their next step where they can pause within an epoch, else the end of the epoch), then the run ends, paused."), (
        _story(logs)
    )
    assert all(i > position for i, *_ in _paused_lines(logs).values()), (
        f"a trial's pause was logged before the pause was announced:\n{_story(logs)}"
    )


def test_a_paused_trial_looks_paused(paused_run):
    flow_run, parameters = paused_run["flow_run"], paused_run["parameters"]
    trials = _task_runs(flow_run.id)
    assert sorted(trials) == ["trial-0", "trial-1"], trials
    for number in (0, 1):
        [task_run] = trials[f"trial-{number}"]
        state = task_run.state
        assert state.name == "Paused", (number, state)
        assert state.type != StateType.COMPLETED and state.type == StateType.CANCELLED, (number, state)
        assert re.fullmatch(
            rf"Trial {number} paused: \d of {MAX_EPOCHS} epochs done; checkpoint .+/epoch-\d{{5}}\.pt\.",
            state.message or "",
        ), state.message
    assert f"{PAUSE_EPOCH + 1} of {MAX_EPOCHS} epochs done" in trials["trial-0"][0].state.message

    # Continued in a second execution, both trials complete: their new task runs are
    # Completed, and the ones that paused stay Paused.
    resumed = run_flow(optimize_study, flow_run=_execute_again(flow_run.id), parameters=parameters)
    assert resumed["status"] == "completed", resumed
    trials = _task_runs(flow_run.id)
    for number in (0, 1):
        first, second = trials[f"trial-{number}"]
        assert (first.state.name, first.state.type) == ("Paused", StateType.CANCELLED), first.state
        assert (second.state.name, second.state.type) == ("Completed", StateType.COMPLETED), second.state
    storage = parameters["execution"]["storage"]
    states = [t.state for t in optuna.load_study(study_name=parameters["study_name"], storage=storage).trials]
    assert states == [optuna.trial.TrialState.COMPLETE] * 2


# -- 3: the completion message, sent once the run is Completed ---------------------------


@pytest.fixture
def notifications_end() -> Iterator[None]:
    """After the test (and after its hanging target closed), its notification threads end:
    their late log lines must not go to a server that has stopped."""
    yield
    for thread in [t for t in threading.enumerate() if t.name.startswith("intermission-notify")]:
        thread.join(timeout=15)


@pytest.fixture
def hanging_url() -> Iterator[str]:
    with hanging_endpoint() as url:
        yield url


class _Lines(logging.Handler):
    """The messages logged in this process by flow runs (what their log in the API gets)."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def test_the_completion_message_goes_out_once_the_run_is_completed(notifications_end, hanging_url, tmp_path):
    """A pause clicked while a finished study reports its completion cannot catch the run:
    the message (one target hangs for seconds) is sent only once the run is Completed."""
    name = f"late-{uuid.uuid4().hex[:6]}"
    storage = f"sqlite:///{tmp_path}/s.db"
    with webhook() as hook:
        PausePolicy(apprise_urls=[hanging_url, hook.url("done")]).save(name)
        parameters = grouped_parameters({
            "study_name": name, "objective": "tests.objectives:classifier", "n_trials": 1, "max_epochs": 2,
            "storage": storage, "checkpoints": str(tmp_path / "ckpt"), "seed": 1, "pause_policy": name,
        })
        flow_run = _new_run(parameters)
        seen_when_sent: list[StateType] = []

        def execute() -> None:
            run_flow(optimize_study, flow_run=flow_run, parameters=parameters)

        thread = threading.Thread(target=contextvars.copy_context().run, args=(execute,), daemon=True)
        thread.start()
        message = _wait_for(lambda: hook.messages(f"Study {name} completed"), 120, "the completion message")
        seen_when_sent.append(_final_state(flow_run.id).type)
        thread.join(timeout=60)
    assert "best trial #0" in message[0]["message"]
    assert seen_when_sent == [StateType.COMPLETED], "the run was still open to a pause while it reported"
    assert _final_state(flow_run.id).type == StateType.COMPLETED
