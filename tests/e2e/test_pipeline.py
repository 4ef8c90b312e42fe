"""The way to use a study as a step of a pipeline: the pipeline starts it as a run of its own
deployment (`run_deployment(..., as_subflow=False)`) and waits for it, through a pause from the
UI, until the study has finished; then the pipeline goes on."""

from __future__ import annotations

import threading
import uuid
from contextvars import copy_context
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName
from prefect.deployments import run_deployment

from deployments.ui_actions import ui_pause, wait_for, wait_until_mid_training
from prefect_intermission.pausing.run_states import FLOW_PAUSE_KEY_PREFIX
from prefect_intermission.study.state import pause_history
from tests.e2e.studies import trained_epochs

pytestmark = pytest.mark.e2e
N_TRIALS = 2
MAX_EPOCHS = 4


@flow
def pipeline(parameters: dict[str, Any]) -> str:
    """A user's pipeline: a pausable study as one step, waited for; its run's final state."""
    study_run = run_deployment(
        "pausable-study/digits-demo", parameters=parameters, as_subflow=False, poll_interval=1,
        job_variables={"env": {"INTERMISSION_TEST_EPOCH_SECONDS": "1"}},
    )
    return study_run.state.name


def _study_run(name: str):
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[name])))
    return runs[0] if runs else None


def test_a_pipeline_waits_for_its_study_through_a_ui_pause(prefect_stack, tmp_path):
    name = f"pipeline-{uuid.uuid4().hex[:6]}"
    storage = f"sqlite:///{tmp_path}/studies.db"
    parameters = {
        "study_name": name, "objective": "tests.e2e.studies:countdown", "n_trials": N_TRIALS,
        "max_epochs": MAX_EPOCHS, "seed": 3, "pruner": "none", "storage": storage,
        "checkpoints": str(tmp_path / "checkpoints"),
    }
    outcome: dict[str, str] = {}
    context = copy_context()  # the test's Prefect settings (its server's API URL)
    waiting = threading.Thread(target=lambda: outcome.update(state=context.run(pipeline, parameters)), daemon=True)
    waiting.start()

    study_run = wait_for(lambda: _study_run(name), timeout=120, what="the pipeline to start the study")
    assert study_run.parent_task_run_id is None
    wait_until_mid_training(storage, name, min_epochs=1, timeout=180)
    # It resumes by itself when those seconds have passed: long enough to see it suspended.
    ui_pause(study_run.id, timeout_seconds=20)

    def suspended_by_study() -> bool:
        key = _study_run(name).state.state_details.pause_key or ""
        return key.startswith(FLOW_PAUSE_KEY_PREFIX)

    wait_for(suspended_by_study, timeout=120, what="the study to pause")
    assert waiting.is_alive(), "the pipeline waits while its study is paused"
    waiting.join(timeout=300)
    assert not waiting.is_alive()

    assert outcome == {"state": "Completed"}
    study = optuna.load_study(study_name=name, storage=storage)
    assert [p["reason"] for p in pause_history(study)] == ["ui"]
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * N_TRIALS
    trained = trained_epochs(study_run.id, at_least=N_TRIALS * MAX_EPOCHS)
    assert trained == {(n, e): 1 for n in range(N_TRIALS) for e in range(MAX_EPOCHS)}, "no epoch trained twice"
