"""End to end: a study run as a plain script stops cleanly on a pause and continues when run again."""

from __future__ import annotations

import shlex
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import optuna

from optuna.trial import TrialState
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

from deployments.local_stack import PROJECT_ROOT
from deployments.ui_actions import read_run, wait_for, wait_until_mid_training
from prefect_intermission import PausePolicy
from prefect_intermission.study.state import pause_history
from tests.e2e.studies import artifacts_of, trained_epochs, trials

SCRIPT = Path(__file__).with_name("run_study_script.py")


@dataclass
class ScriptStudy:
    """A study run by `run_study_script.py`, with the command that starts (and continues) it."""

    name: str
    storage: str
    command: list[str]
    pause_file: Path


def _script_study(tmp_path: Path, prefix: str, *, with_pause_file: bool = False) -> ScriptStudy:
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    storage = f"sqlite:///{tmp_path}/studies.db"
    pause_file = tmp_path / "pause-my-search"
    command = [sys.executable, str(SCRIPT), name, storage, str(tmp_path / "checkpoints")]
    if with_pause_file:
        PausePolicy(pause_file=str(pause_file)).save(name)
        command += ["--pause-policy", name]
    return ScriptStudy(name, storage, command, pause_file)


@contextmanager
def _started(command: list[str], env: dict[str, str]) -> Iterator[subprocess.Popen]:
    """The script running; killed (and its pipes closed) if a check fails before it ends."""
    process = subprocess.Popen(
        command, env=env, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def _all_runs(name: str):
    with get_client(sync_client=True) as client:
        return client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[name])))


def _flow_run_named(name: str):
    runs = _all_runs(name)
    return runs[0] if runs else None


def test_a_script_run_pauses_cleanly_and_prints_the_command_that_continues_it(prefect_stack, tmp_path):
    study = _script_study(tmp_path, "script")
    study_name, storage, command = study.name, study.storage, study.command
    with _started(command, prefect_stack.env) as process:
        wait_until_mid_training(storage, study_name, min_epochs=1, timeout=120)
        flow_run = wait_for(lambda: _flow_run_named(study_name), timeout=30, what="the flow run")
        paused = subprocess.run(
            [sys.executable, "-m", "prefect_intermission.cli.commands", "pause", str(flow_run.id)],
            env=prefect_stack.env, capture_output=True, text=True, timeout=60,
        )
        assert paused.returncode == 0, paused.stderr
        _, stderr = process.communicate(timeout=120)

    assert process.returncode == 0, stderr
    assert "cannot be suspended" in stderr
    assert shlex.join(command) in stderr
    assert read_run(flow_run.id).state.name == "Paused"
    stopped = [t for t in trials(storage, study_name) if t.state == TrialState.RUNNING]
    assert stopped and all(t.system_attrs["intermission:status"] == "paused" for t in stopped)
    # The run's page says how this run continues: not a Resume button it does not have.
    summary = artifacts_of(flow_run.id)[f"{study_name}-pause"].data
    assert f"Run the same command again:\n\n    {shlex.join(command)}" in summary
    assert "intermission resume" not in summary

    printed = stderr[stderr.index(shlex.join(command)):].splitlines()[0]
    again = subprocess.run(
        shlex.split(printed), env=prefect_stack.env, cwd=PROJECT_ROOT,
        capture_output=True, text=True, timeout=300,
    )
    assert again.returncode == 0, again.stderr
    finished = trials(storage, study_name)
    assert [t.number for t in finished] == [0, 1]
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in finished)
    second_run = [r for r in _all_runs(study_name) if r.id != flow_run.id][0]
    first_epochs, second_epochs = trained_epochs(flow_run.id), trained_epochs(second_run.id)
    assert not set(first_epochs) & set(second_epochs), "an epoch was trained again"


def test_a_script_run_waits_for_its_pause_file_to_be_deleted_and_goes_on(prefect_stack, tmp_path):
    study = _script_study(tmp_path, "script-file", with_pause_file=True)
    study_name, storage, command, pause_file = study.name, study.storage, study.command, study.pause_file
    with _started(command, prefect_stack.env) as process:
        wait_until_mid_training(storage, study_name, min_epochs=1, timeout=120)
        pause_file.touch()

        def paused():
            unfinished = [t for t in trials(storage, study_name) if t.state == TrialState.RUNNING]
            return unfinished if all(t.system_attrs["intermission:status"] == "paused" for t in unfinished) else None

        stopped = wait_for(paused, timeout=60, what="the trials to pause")
        assert stopped, "a trial was mid-training when the pause file was created"
        time.sleep(3)  # waiting in-process: alive, and training nothing
        assert process.poll() is None
        summary = artifacts_of(_flow_run_named(study_name).id)[f"{study_name}-pause"].data
        assert "**Why:** the pause file was created" in summary
        assert f"Delete `{pause_file}`: the study resumes in its process." in summary
        assert [len(t.intermediate_values) for t in trials(storage, study_name) if t.state == TrialState.RUNNING] \
            == [len(t.intermediate_values) for t in stopped]
        pause_file.unlink()
        _, stderr = process.communicate(timeout=300)

    assert process.returncode == 0, stderr
    assert f"Delete {pause_file} to resume it in this process" in stderr
    assert f"Pause file {pause_file} deleted" in stderr
    finished = trials(storage, study_name)
    assert len(finished) == 2 and all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in finished)
    [pause] = pause_history(optuna.load_study(study_name=study_name, storage=storage))
    assert pause["reason"] == "file" and set(pause["trials"]) == {str(t.number) for t in stopped}
    for t in stopped:
        [resumed] = finished[t.number].system_attrs["intermission:resumptions"]
        assert resumed["reason"] == "pause" and resumed["lost_epochs"] == []
    flow_run = _flow_run_named(study_name)
    assert read_run(flow_run.id).state.name == "Completed"
    assert max(trained_epochs(flow_run.id).values()) == 1, "an epoch was trained twice"


def test_sigterm_while_waiting_for_the_pause_file_ends_the_run_paused(prefect_stack, tmp_path):
    study = _script_study(tmp_path, "script-term", with_pause_file=True)
    study_name, storage, command, pause_file = study.name, study.storage, study.command, study.pause_file
    with _started(command, prefect_stack.env) as process:
        wait_until_mid_training(storage, study_name, min_epochs=1, timeout=120)
        pause_file.touch()
        flow_run = wait_for(
            lambda: (run := _flow_run_named(study_name)) and f"{study_name}-pause" in artifacts_of(run.id) and run,
            timeout=60, what="the run to wait for its pause file",
        )
        process.send_signal(signal.SIGTERM)  # the machine shuts down while the study waits
        _, stderr = process.communicate(timeout=60)

    assert process.returncode == 0, stderr
    assert f"Stopped waiting for {pause_file} to be deleted (signal); the study stays paused" in stderr
    assert read_run(flow_run.id).state.name == "Paused"
    paused = [t for t in trials(storage, study_name) if t.state == TrialState.RUNNING]
    assert paused and all(t.system_attrs["intermission:status"] == "paused" for t in paused)

    pause_file.unlink()
    again = subprocess.run(command, env=prefect_stack.env, cwd=PROJECT_ROOT, capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0, again.stderr
    finished = trials(storage, study_name)
    assert len(finished) == 2 and all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in finished)
