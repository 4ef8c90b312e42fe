"""End to end: the Transformers demo deployment paused from the UI within an epoch, resumed,
and compared bit for bit with an uninterrupted run of the same search (issue 13, acceptance)."""

from __future__ import annotations

import uuid

import torch
from optuna.trial import TrialState

from deployments.ui_actions import (
    policy_waiting_for_resume,
    process_is_gone,
    start_deployment_run,
    ui_pause,
    ui_resume,
    wait_for,
    wait_for_state,
)
from prefect_intermission import CheckpointStore, optimize_study
from prefect_intermission.study.state import TRIAL_PAUSED_EPOCH_ATTR, TRIAL_STATUS_ATTR
from tests.e2e.studies import final_weights, trials

N_TRIALS = 2
MAX_EPOCHS = 2


def _parameters(study_name: str, tmp_path) -> dict:
    return {
        "study_name": study_name,
        "storage": f"sqlite:///{tmp_path}/studies.db",
        "checkpoints": str(tmp_path / "checkpoints"),
        "n_trials": N_TRIALS,
        "max_epochs": MAX_EPOCHS,
        "max_concurrent_trials": 1,
        "seed": 4,
        # 200 optimizer steps an epoch (a second or more): the pause, sent within 0.05 s of the first
        # epoch's checkpoint and seen by the study within 0.2 s, lands well within the second.
        "objective_params": {"train_examples": 3200, "batch_size": 16},
    }


def test_the_transformers_demo_paused_from_the_ui_within_an_epoch_matches_an_uninterrupted_run(
    prefect_stack, tmp_path
):
    tag = uuid.uuid4().hex[:6]
    storage, checkpoints = f"sqlite:///{tmp_path}/studies.db", str(tmp_path / "checkpoints")
    reference_name, paused_name = f"reference-{tag}", f"paused-{tag}"
    run = start_deployment_run(
        "pausable-study/text-classification-demo",
        {**_parameters(paused_name, tmp_path), "pause_policy": policy_waiting_for_resume()},
    )

    number = 0  # one trial at a time: the first one
    stored = CheckpointStore(checkpoints).for_trial(paused_name, number)
    wait_for(lambda: stored.epochs() == [0], timeout=300, what="the first epoch's checkpoint", every=0.05)
    ui_pause(run.id, timeout_seconds=30)  # within the second epoch's 200 steps
    suspended = wait_for_state(run.id, "Suspended", timeout=120)
    wait_for(lambda: process_is_gone(suspended), timeout=60, what="the flow's process to exit")
    [paused] = [t for t in trials(storage, paused_name) if t.state == TrialState.RUNNING]
    assert (paused.number, paused.system_attrs[TRIAL_STATUS_ATTR]) == (number, "paused")
    assert paused.system_attrs[TRIAL_PAUSED_EPOCH_ATTR] == 0 and list(paused.intermediate_values) == [0]
    assert [(e["epoch"], e.get("mid_epoch", False)) for e in stored.entries()] == [(0, False), (1, True)]

    # The uninterrupted run, while the paused one waits (in this process: one study at a time).
    reference = {**_parameters(reference_name, tmp_path), "objective": "flows.text_classification:objective"}
    assert optimize_study(**reference)["status"] == "completed"
    ui_resume(run.id)
    assert wait_for_state(run.id, "Completed", timeout=600).state.name == "Completed"

    def study(name):
        return [(t.number, t.state, t.params, t.intermediate_values, t.values) for t in trials(storage, name)]

    assert study(paused_name) == study(reference_name)
    for n in range(N_TRIALS):
        a, b = final_weights(checkpoints, paused_name, n), final_weights(checkpoints, reference_name, n)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), f"trial {n}"
