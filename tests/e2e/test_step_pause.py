"""End to end: a deployment run paused within an epoch from the UI, then killed within an epoch
(SIGKILL, as after a pod's grace period), continues every trial step for step: the same study
and the same weights as a run that never stopped."""

from __future__ import annotations

import os
import signal
import uuid

import torch
from optuna.trial import TrialState

from deployments.ui_actions import (
    wait_until_suspended_by_study,
    policy_waiting_for_resume,
    process_is_gone,
    read_run,
    start_deployment_run,
    ui_pause,
    ui_resume,
    wait_for,
    wait_for_state,
)
from prefect_intermission.study.state import TRIAL_PAUSED_STEPS_ATTR
from tests.e2e.studies import final_weights, trials
from tests.e2e.test_pause_resume import _intermission

N_TRIALS, MAX_EPOCHS = 2, 3  # 8 steps an epoch


def _parameters(name: str, tmp_path) -> dict:
    return {
        "study_name": name, "objective": "tests.objectives:slow_stepped_classifier",
        "storage": f"sqlite:///{tmp_path}/studies.db", "checkpoints": str(tmp_path / "checkpoints"),
        "n_trials": N_TRIALS, "max_epochs": MAX_EPOCHS, "seed": 5, "sampler": "random", "pruner": "none",
        "max_concurrent_trials": 1,  # concurrent trials share the global generators
        "pause_granularity": "step", "checkpoint_every_steps": 1,
    }


def _steps_stored(checkpoints: str, name: str, number: int) -> int:
    from prefect_intermission.training.store import CheckpointStore

    state = CheckpointStore(checkpoints).for_trial(name, number).load_latest_valid().state
    return state["global_step"] if state else 0


def test_paused_and_killed_within_epochs_it_continues_step_for_step(prefect_stack, tmp_path):
    tag = uuid.uuid4().hex[:6]
    storage, checkpoints = f"sqlite:///{tmp_path}/studies.db", str(tmp_path / "checkpoints")
    reference_name, name = f"steps-ref-{tag}", f"steps-{tag}"
    reference = start_deployment_run("pausable-study/digits-demo", _parameters(reference_name, tmp_path))
    env = {"INTERMISSION_LEASE_SECONDS": "2"}
    run = start_deployment_run(
        "pausable-study/digits-demo",
        {**_parameters(name, tmp_path), "pause_policy": policy_waiting_for_resume()}, {"env": env},
    )

    # The UI's Pause within trial 0's second epoch: it stops at its next step.
    wait_for(lambda: _steps_stored(checkpoints, name, 0) >= 11, timeout=180, what="trial 0 within epoch 2")
    ui_pause(run.id)
    wait_until_suspended_by_study(run.id)
    paused = trials(storage, name)[0]
    assert paused.state == TrialState.RUNNING, [(t.number, t.state, t.system_attrs) for t in trials(storage, name)]
    steps_in = paused.system_attrs[TRIAL_PAUSED_STEPS_ATTR]
    assert 0 < steps_in < 8, "paused within the epoch, not at its end"
    shown = _intermission("status", name, env=prefect_stack.env)
    assert f"1 of {MAX_EPOCHS} epochs done, and {steps_in} steps into epoch 2" in shown.stdout

    # Resumed, then killed within an epoch: every step taken was checkpointed.
    ui_resume(run.id)
    wait_for_state(run.id, "Running", timeout=120)
    before = _steps_stored(checkpoints, name, paused.number)
    wait_for(lambda: _steps_stored(checkpoints, name, paused.number) >= before + 3, timeout=120, what="more steps")
    running = read_run(run.id)
    os.kill(int(running.infrastructure_pid.rpartition(":")[2]), signal.SIGKILL)
    wait_for(lambda: process_is_gone(running), timeout=30, what="the killed process to be gone")
    stored_at_kill = _steps_stored(checkpoints, name, paused.number)

    again = start_deployment_run("pausable-study/digits-demo", _parameters(name, tmp_path), {"env": env})
    wait_for_state(again.id, "Completed", timeout=300)
    wait_for_state(reference.id, "Completed", timeout=300)
    got, expected = trials(storage, name), trials(storage, reference_name)
    [resumption] = [r for r in got[paused.number].system_attrs["intermission:resumptions"] if r["reason"] == "crash"]
    assert resumption["lost_epochs"] == []
    assert stored_at_kill > before
    for mine, theirs in zip(got, expected, strict=True):
        assert (mine.params, mine.intermediate_values, mine.value) == (theirs.params, theirs.intermediate_values, theirs.value)
        a, b = final_weights(checkpoints, name, mine.number), final_weights(checkpoints, reference_name, theirs.number)
        assert all(torch.equal(a[k], b[k]) for k in b), f"trial {mine.number} weights differ"
