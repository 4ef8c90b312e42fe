"""End to end: the Lightning demo deployment paused from the UI, resumed, and compared bit for
bit with an uninterrupted run of the same search."""

from __future__ import annotations

import uuid

import torch
from optuna.trial import TrialState

from deployments.ui_actions import (
    policy_waiting_for_resume,
    process_is_gone,
    read_run,
    start_deployment_run,
    ui_pause,
    ui_resume,
    wait_for,
    wait_for_state,
    wait_until_mid_training,
)
from prefect.client.schemas.objects import FlowRun

from prefect_intermission import CheckpointStore
from prefect_intermission.pausing.run_states import FLOW_PAUSE_KEY_PREFIX
from prefect_intermission.study.state import TRIAL_STATUS_ATTR
from tests.e2e.studies import trials

DEPLOYMENT = "pausable-study/lightning-digits-demo"
N_TRIALS = 2
MAX_EPOCHS = 3


def _suspended_by_study(flow_run_id: uuid.UUID) -> FlowRun | None:
    """The run, once the study itself has suspended it (not just the UI's request)."""
    run = read_run(flow_run_id)
    key = run.state.state_details.pause_key or "" if run.state else ""
    return run if run.state.name == "Suspended" and key.startswith(FLOW_PAUSE_KEY_PREFIX) else None


def _final_weights(checkpoints: str, study_name: str, number: int) -> dict[str, torch.Tensor]:
    return CheckpointStore(checkpoints).for_trial(study_name, number).load_latest_valid().state["state_dict"]


def test_the_lightning_demo_paused_from_the_ui_matches_an_uninterrupted_run(prefect_stack, tmp_path):
    prefect_stack.deploy("lightning-digits-demo")
    tag = uuid.uuid4().hex[:6]
    storage, checkpoints = f"sqlite:///{tmp_path}/studies.db", str(tmp_path / "checkpoints")
    reference_name, paused_name = f"lightning-reference-{tag}", f"lightning-paused-{tag}"
    common = {"storage": storage, "checkpoints": checkpoints, "n_trials": N_TRIALS, "max_epochs": MAX_EPOCHS,
              "max_concurrent_trials": 1, "seed": 7}
    reference = start_deployment_run(DEPLOYMENT, {"study_name": reference_name, **common})
    run = start_deployment_run(
        DEPLOYMENT, {"study_name": paused_name, "pause_policy": policy_waiting_for_resume(), **common}
    )

    [number] = wait_until_mid_training(storage, paused_name, min_epochs=1)
    ui_pause(run.id, timeout_seconds=3)
    suspended = wait_for(lambda: _suspended_by_study(run.id), timeout=120, what="the study to suspend its run")
    wait_for(lambda: process_is_gone(suspended), timeout=60, what="the flow's process to exit")
    [paused] = [t for t in trials(storage, paused_name) if t.state == TrialState.RUNNING]
    assert paused.number == number and paused.system_attrs[TRIAL_STATUS_ATTR] == "paused"

    ui_resume(run.id)
    wait_for_state(run.id, "Completed", timeout=300)
    wait_for_state(reference.id, "Completed", timeout=300)

    got, expected = trials(storage, paused_name), trials(storage, reference_name)
    assert [t.state for t in got] == [TrialState.COMPLETE] * N_TRIALS
    for mine, theirs in zip(got, expected, strict=True):
        assert (mine.params, mine.intermediate_values, mine.values) == (
            theirs.params, theirs.intermediate_values, theirs.values
        )
        a = _final_weights(checkpoints, paused_name, mine.number)
        b = _final_weights(checkpoints, reference_name, theirs.number)
        assert all(torch.equal(a[k], b[k]) for k in b), f"trial {mine.number} weights differ"
