"""A study paused longer than its policy's `abandon_after_hours` is abandoned, not resumed at
night, and still continues from its checkpoints when run again."""

from __future__ import annotations

import time
import uuid

import pytest
from optuna.trial import TrialState

from deployments.ui_actions import read_run, start_deployment_run, wait_for, wait_for_state, wait_until_mid_training
from prefect_intermission import PausePolicy, request_pause
from prefect_intermission.flows.control import abandon_expired_pauses_flow, resume_paused_studies
from prefect_intermission.pausing.run_states import FLOW_PAUSE_KEY_PREFIX
from tests.e2e.studies import study_events, trained_epochs, trials
from tests.status_study import status_json


def _parameters(name, tmp_path):
    return {
        "study_name": name, "storage": f"sqlite:///{tmp_path}/studies.db",
        "checkpoints": str(tmp_path / "checkpoints"), "n_trials": 2, "max_epochs": 12, "seed": 3,
        "objective": "tests.objectives:slow_classifier", "pause_policy": name,
    }


def test_a_study_paused_too_long_is_abandoned_and_continues_when_run_again(prefect_stack, tmp_path):
    name = f"abandoned-{uuid.uuid4().hex[:6]}"
    storage = f"sqlite:///{tmp_path}/studies.db"
    PausePolicy(abandon_after_hours=1 / 3600).save(name)  # one second, for the test
    run = start_deployment_run("pausable-study/digits-demo", _parameters(name, tmp_path))
    wait_until_mid_training(storage, name, min_epochs=1)
    request_pause(run.id)

    def suspended_by_study():
        r = read_run(run.id)
        key = (r.state.state_details.pause_key or "") if r.state else ""
        return r if r.state.is_paused() and key.startswith(FLOW_PAUSE_KEY_PREFIX) else None

    wait_for(suspended_by_study, timeout=120, what="the study to suspend its run")
    time.sleep(2)

    assert resume_paused_studies(study_name_prefix=name) == []  # abandoned, not resumed
    state = read_run(run.id).state
    assert state.type.value == "CANCELLED" and state.name == "Abandoned"
    assert "run the study again" in state.message
    assert status_json(name, prefect_stack.env)["state"] == "abandoned"
    # Events reach the server's events API a moment after they are emitted, as in the UI's feed.
    abandoned = wait_for(
        lambda: [e for e in study_events(name) if e["event"] == "intermission.study.abandoned"],
        timeout=30, what="the study's abandoned event",
    )
    assert len(abandoned) == 1 and abandoned[0]["payload"]["abandon_after_hours"] == pytest.approx(1 / 3600)
    assert abandon_expired_pauses_flow() == []  # once abandoned, it is left alone

    # Nothing was lost: running the study again continues its paused trials.
    paused = {t.number: len(t.intermediate_values) for t in trials(storage, name) if t.state == TrialState.RUNNING}
    assert paused
    again = start_deployment_run("pausable-study/digits-demo", _parameters(name, tmp_path))
    assert wait_for_state(again.id, "Completed", "Failed", timeout=300).state.name == "Completed"
    done = trials(storage, name)
    assert all(t.state.is_finished() for t in done) and len(done) == 2
    for number, epochs in paused.items():
        [resumed] = done[number].system_attrs["intermission:resumptions"]
        assert resumed["from_epoch"] == epochs - 1 and resumed["lost_epochs"] == []
    first, second = trained_epochs(run.id), trained_epochs(again.id)
    assert not set(first) & set(second), "an epoch was trained again"
