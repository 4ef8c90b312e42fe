"""End to end: SIGTERM and Ctrl+C pause a study safely and it completes after a resume with nothing
retrained or lost; a second Ctrl+C stops at once; a Prefect cancellation still cancels."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import time
import uuid

import optuna
from optuna.trial import TrialState
from prefect.client.orchestration import get_client
from prefect.deployments import run_deployment
from prefect_intermission import request_resume
from prefect_intermission.control.trial_control import request_trial_pause
from prefect_intermission.pausing.run_states import FLOW_PAUSE_KEY_PREFIX
from prefect_intermission.reporting.artifacts import artifact_key
from prefect_intermission.study.leases import StudyLease
from prefect_intermission.study.state import (
    TRIAL_PAUSED_EPOCH_ATTR,
    TRIAL_RESUMPTIONS_ATTR,
    TRIAL_STATUS_ATTR,
    pause_history,
)
from sqlalchemy import create_engine

from deployments.local_stack import PROJECT_ROOT
from deployments.ui_actions import (
    process_is_gone,
    read_run,
    study_parameters,
    wait_for,
    wait_for_state,
    wait_until_mid_training,
)
from tests.e2e.studies import artifacts_of, run_logs, trained_epochs, trials
from tests.e2e.terminal import Terminal, study_command
from tests.e2e.test_keys import check_continued_exactly, flow_runs_named
from tests.status_study import intermission, status_json

CTRL_C = b"\x03"


def _history(storage: str, name: str) -> list[dict]:
    return pause_history(optuna.load_study(study_name=name, storage=storage))


def test_ctrl_c_pauses_a_script_run_and_the_same_command_continues_it(prefect_stack, tmp_path):
    name = f"ctrl-c-{uuid.uuid4().hex[:6]}"
    storage = f"sqlite:///{tmp_path}/studies.db"
    command = study_command(tmp_path, name)
    terminal = Terminal(command, {**prefect_stack.env, "INTERMISSION_TEST_EPOCH_SECONDS": "0.5"})
    try:
        wait_until_mid_training(storage, name, min_epochs=2, timeout=120)
        terminal.type(CTRL_C)
        code = terminal.wait(timeout=180)
    finally:
        terminal.close()

    assert code == 0, terminal.screen[-3000:]
    assert "Ctrl+C: pausing" in terminal.screen and "cannot be suspended" in terminal.screen
    assert flow_runs_named(name)[0].state.name == "Paused"
    assert _history(storage, name)[-1]["reason"] == "signal"
    again = subprocess.run(command, env={**prefect_stack.env, "INTERMISSION_TEST_EPOCH_SECONDS": "0.05"},
                           cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    check_continued_exactly(storage, name, max_retrained=0)


def test_a_second_ctrl_c_stops_at_once_and_the_next_run_continues_from_the_checkpoints(prefect_stack, tmp_path):
    name = f"ctrl-c-twice-{uuid.uuid4().hex[:6]}"
    storage = f"sqlite:///{tmp_path}/studies.db"
    command = study_command(tmp_path, name)
    epoch_seconds = 8  # the epoch in progress when Ctrl+C comes twice has seconds left to run
    terminal = Terminal(command, {**prefect_stack.env, "INTERMISSION_TEST_EPOCH_SECONDS": str(epoch_seconds)})
    try:
        terminal.wait_for_text(r"Trial 0 finished epoch 1 of ", timeout=180)
        terminal.type(CTRL_C)
        terminal.wait_for_text(r"Ctrl\+C: pausing", timeout=30)
        terminal.type(CTRL_C)
        second = time.monotonic()
        time.sleep(0.3)
        terminal.type(CTRL_C)  # people press it more than twice; that must not cut the saving short
        code = terminal.wait(timeout=120)
        stopped_after = time.monotonic() - second
    finally:
        terminal.close()

    assert code == 130, terminal.screen[-3000:]
    assert "stopped at once (second Ctrl+C)" in terminal.screen
    assert shlex.join(command) in terminal.screen, "it says how to continue"
    assert stopped_after < epoch_seconds, f"it waited {stopped_after:.1f} s: for the epoch in progress?"
    (trial,) = trials(storage, name)
    # Epoch 1 was in progress: it never finished, and the trial is marked paused at its checkpoint.
    assert trial.state == TrialState.RUNNING and list(trial.intermediate_values) == [0]
    assert trial.system_attrs["intermission:status"] == "paused"
    assert trial.system_attrs[TRIAL_PAUSED_EPOCH_ATTR] == 0
    assert _history(storage, name)[-1]["reason"] == "signal"
    assert _history(storage, name)[-1]["trials"] == {"0": 0}
    assert flow_runs_named(name)[0].state.name == "Paused"
    summary = artifacts_of(flow_runs_named(name)[0].id)[artifact_key(name, "pause")].data
    assert "SIGTERM or Ctrl+C" in summary and shlex.join(command) in summary, summary
    # It gave its lease up: running it again starts at once, not after the lease expires.
    assert StudyLease(create_engine(storage), name, "a test").holder() is None

    again = subprocess.run(command, env={**prefect_stack.env, "INTERMISSION_TEST_EPOCH_SECONDS": "0.05"},
                           cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    check_continued_exactly(storage, name, max_retrained=1)
    resumed = trials(storage, name)[0].system_attrs[TRIAL_RESUMPTIONS_ATTR][-1]
    assert (resumed["reason"], resumed["from_epoch"], resumed["fallbacks"]) == ("pause", 0, []), resumed


def _start(name, tmp_path, *, n_trials=2, max_epochs=14, epoch_seconds=0.5):
    return run_deployment(
        "pausable-study/digits-demo", timeout=0, as_subflow=False,
        parameters=study_parameters("pausable-study/digits-demo", {
            "study_name": name,
            "objective": "tests.objectives:slow_classifier",
            "storage": f"sqlite:///{tmp_path}/studies.db",
            "checkpoints": str(tmp_path / "checkpoints"),
            "n_trials": n_trials,
            "max_epochs": max_epochs,
            "seed": 3,
        }),
        job_variables={"env": {"INTERMISSION_TEST_EPOCH_SECONDS": str(epoch_seconds)}},
    )


def _running_process(run_id):
    return wait_for(lambda: (r := read_run(run_id)).infrastructure_pid and r, timeout=30, what="the run's pid")


def _pid(run) -> int:
    return int(run.infrastructure_pid.rpartition(":")[2])


def _mid_training(prefix: str, tmp_path):
    """A new study's deployment run once a trial is mid-training: name, storage, run, and the run with its pid."""
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    storage = f"sqlite:///{tmp_path}/studies.db"
    run = _start(name, tmp_path)
    wait_until_mid_training(storage, name, min_epochs=2)
    return name, storage, run, _running_process(run.id)


def test_sigterm_suspends_a_deployment_run_and_a_resume_completes_it(prefect_stack, tmp_path):
    name, storage, run, running = _mid_training("sigterm", tmp_path)
    os.kill(_pid(running), signal.SIGTERM)

    wait_for(lambda: _suspended_by_study(run.id), timeout=120, what="the study to suspend its run")
    wait_for(lambda: process_is_gone(running), timeout=60, what="the flow's process to exit")
    assert _history(storage, name)[-1]["reason"] == "signal"
    assert "SIGTERM: pausing" in run_logs(run.id)
    status = status_json(name, prefect_stack.env)
    assert (status["state"], status["last_pause"]["reason"]) == ("paused", "signal")
    assert "(signal)" in intermission("status", name, env=prefect_stack.env).stdout
    assert "SIGTERM or Ctrl+C" in artifacts_of(run.id)[artifact_key(name, "pause")].data
    paused = {t.number: t.system_attrs[TRIAL_PAUSED_EPOCH_ATTR] for t in trials(storage, name) if t.state == TrialState.RUNNING}
    assert paused, "a trial was mid-training when SIGTERM came"

    request_resume(run.id)
    wait_for_state(run.id, "Completed", timeout=300)
    done = trials(storage, name)
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in done) and len(done) == 2
    assert max(trained_epochs(run.id).values()) == 1, "an epoch was trained twice"
    for number, epoch in paused.items():
        record = done[number].system_attrs[TRIAL_RESUMPTIONS_ATTR][-1]
        assert (record["reason"], record["from_epoch"], record["lost_epochs"]) == ("pause", epoch, [])


def _suspended_by_study(run_id):
    state = read_run(run_id).state
    return state.is_paused() and (state.state_details.pause_key or "").startswith(FLOW_PAUSE_KEY_PREFIX)


def test_two_ctrl_c_suspend_a_deployment_run_at_once_and_a_resume_completes_it(prefect_stack, tmp_path):
    name = f"sigint-twice-{uuid.uuid4().hex[:6]}"
    storage = f"sqlite:///{tmp_path}/studies.db"
    # Long epochs: the second Ctrl+C comes while the first waits for the epoch to end.
    run = _start(name, tmp_path, n_trials=2, max_epochs=4, epoch_seconds=6)
    wait_for(lambda: len([t for t in _trials_or_none(storage, name) if t.intermediate_values]) == 2,
             timeout=180, what="both trials to finish an epoch")
    request_trial_pause(run.id, 0)  # trial 0 is held (paused on its own) when Ctrl+C comes
    wait_for(lambda: trials(storage, name)[0].system_attrs.get(TRIAL_STATUS_ATTR) == "paused",
             timeout=60, what="trial 0 to pause on its own")
    running = _running_process(run.id)
    os.kill(_pid(running), signal.SIGINT)
    wait_for(lambda: "Ctrl+C: pausing" in run_logs(run.id), timeout=60, what="the first Ctrl+C to be taken")
    os.kill(_pid(running), signal.SIGINT)

    wait_for(lambda: _suspended_by_study(run.id), timeout=120, what="the study to suspend its run")
    wait_for(lambda: process_is_gone(running), timeout=60, what="the flow's process to exit")
    assert "stopped at once (second Ctrl+C)" in run_logs(run.id)
    time.sleep(3)
    assert _suspended_by_study(run.id), "the worker changed the state of the run after its process exited"
    stop = _history(storage, name)[-1]
    assert stop["reason"] == "signal"
    assert sorted(stop["trials"]) == ["0", "1"], "the held trial and the one stopped at once are both paused"

    request_resume(run.id)
    wait_for_state(run.id, "Completed", timeout=300)
    done = trials(storage, name)
    assert [t.state for t in done] == [TrialState.COMPLETE, TrialState.COMPLETE]
    reported = sum(len(t.intermediate_values) for t in done)
    counts = trained_epochs(run.id, at_least=reported)
    assert len(counts) == reported, "an epoch was lost"
    twice = [epoch for epoch, n in counts.items() if n > 1]
    assert len(twice) <= 1 and max(counts.values()) <= 2, f"more than the epoch in progress retrained: {twice}"


def _trials_or_none(storage, name):
    try:
        return trials(storage, name)
    except KeyError:  # the study is not created yet
        return []


def test_a_prefect_cancellation_still_cancels(prefect_stack, tmp_path):
    name, storage, run, running = _mid_training("cancelled", tmp_path)
    prefect_stack.prefect("flow-run", "cancel", str(run.id))  # Cancelling; the worker sends SIGTERM

    wait_for_state(run.id, "Cancelled", timeout=120)  # fails at once if it ends Crashed or Failed
    wait_for(lambda: process_is_gone(running), timeout=60, what="the flow's process to exit")
    with get_client(sync_client=True) as client:
        history = client.read_flow_run_states(run.id)
    assert not any(s.is_paused() for s in history), [s.name for s in history]
    assert _history(storage, name) == [], "a cancellation is not a pause"
    assert "the flow run is being cancelled; leaving it to Prefect" in run_logs(run.id)
    time.sleep(2)
    assert read_run(run.id).state.name == "Cancelled"
