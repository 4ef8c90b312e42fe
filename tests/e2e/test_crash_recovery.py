"""A study whose run died (killed while suspending, or hung until the UI's pause expired and the
server failed it) is continued by running the deployment again, with nothing lost."""

from __future__ import annotations

import os
import signal
import uuid

from optuna.trial import TrialState

from deployments.ui_actions import (
    process_is_gone,
    read_run,
    study_parameters,
    ui_pause,
    wait_for,
    wait_for_state,
    wait_until_mid_training,
)
from prefect_intermission.study.state import TRIAL_RESUMPTIONS_ATTR
from tests.e2e.studies import trained_epochs, trials

N_TRIALS = 3


def _parameters(study_name, tmp_path):
    return {
        "study_name": study_name,
        "storage": f"sqlite:///{tmp_path}/studies.db",
        "checkpoints": str(tmp_path / "checkpoints"),
        "n_trials": N_TRIALS,
        "max_epochs": 12,  # long enough that the pause lands mid-training on an idle machine
        "max_concurrent_trials": 1,
        "seed": 11,
    }


def _start_with_env(name, tmp_path, env):
    from prefect.deployments import run_deployment

    return run_deployment(
        "pausable-study/digits-demo", parameters=study_parameters("pausable-study/digits-demo", _parameters(name, tmp_path)), timeout=0,
        as_subflow=False, job_variables={"env": env},
    )


def _pid(run) -> int:
    return int(run.infrastructure_pid.rpartition(":")[2])


def _check_complete_and_nothing_retrained(storage, name, runs, max_lost):
    done = trials(storage, name)
    assert [t.number for t in done] == list(range(N_TRIALS))
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in done)
    trained = [trained_epochs(run.id) for run in runs]
    repeated = set(trained[0]) & set(trained[1])
    assert len(repeated) <= max_lost, f"epochs trained twice: {sorted(repeated)}"
    return done


def test_killed_while_suspending_then_run_again(prefect_stack, tmp_path):
    name = f"killed-suspending-{uuid.uuid4().hex[:6]}"
    storage = f"sqlite:///{tmp_path}/studies.db"
    first = _start_with_env(name, tmp_path, {"INTERMISSION_FAULT": "flow.suspend:1", "INTERMISSION_LEASE_SECONDS": "2"})
    wait_until_mid_training(storage, name, min_epochs=2)
    running = wait_for(lambda: (r := read_run(first.id)).infrastructure_pid and r, timeout=30, what="a pid")
    ui_pause(first.id)
    wait_for(lambda: process_is_gone(running), timeout=120, what="the process to be killed while suspending")
    # A trial paused before its first epoch boundary continues from scratch (no checkpoint: None).
    paused = {t.number: max(t.intermediate_values, default=None)
              for t in trials(storage, name) if t.state == TrialState.RUNNING}
    assert paused, "a trial was paused before the kill"

    second = _start_with_env(name, tmp_path, {"INTERMISSION_LEASE_SECONDS": "2"})
    wait_for_state(second.id, "Completed", timeout=300)

    done = _check_complete_and_nothing_retrained(storage, name, [first, second], max_lost=0)
    for number, epoch in paused.items():
        record = done[number].system_attrs[TRIAL_RESUMPTIONS_ATTR][-1]
        assert (record["reason"], record["from_epoch"], record["lost_epochs"]) == ("pause", epoch, [])


def test_an_expired_ui_pause_is_continued_by_running_the_deployment_again(prefect_stack, tmp_path):
    name = f"expired-{uuid.uuid4().hex[:6]}"
    storage = f"sqlite:///{tmp_path}/studies.db"
    first = _start_with_env(name, tmp_path, {"INTERMISSION_LEASE_SECONDS": "2"})
    wait_until_mid_training(storage, name, min_epochs=2)
    running = wait_for(lambda: (r := read_run(first.id)).infrastructure_pid and r, timeout=30, what="a pid")
    os.kill(_pid(running), signal.SIGSTOP)  # the machine hangs: nothing can take the pause over
    try:
        ui_pause(first.id, timeout_seconds=3)
        failed = wait_for_state(first.id, "Failed", timeout=60)
        assert failed.state.message == "The flow was paused and never resumed."
    finally:
        os.kill(_pid(running), signal.SIGKILL)
    cut_off = {t.number for t in trials(storage, name) if t.state == TrialState.RUNNING}
    assert cut_off

    second = _start_with_env(name, tmp_path, {"INTERMISSION_LEASE_SECONDS": "2"})
    wait_for_state(second.id, "Completed", timeout=300)

    done = _check_complete_and_nothing_retrained(storage, name, [first, second], max_lost=1)
    for number in cut_off:
        record = done[number].system_attrs[TRIAL_RESUMPTIONS_ATTR][-1]
        assert record["reason"] == "crash"
        assert record["from_epoch"] is not None and len(record["lost_epochs"]) <= 1
        assert record["fallbacks"] == []
