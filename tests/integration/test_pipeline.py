"""A study started as a subflow of a user's pipeline refuses, before any work, and says how to
run it from a pipeline instead (a pause could not suspend the parent run)."""

from __future__ import annotations

import uuid

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

from prefect_intermission import ConfigurationError, optimize_study

pytestmark = pytest.mark.usefixtures("prefect_server")


@flow
def pipeline(study_name: str, storage: str, checkpoints: str) -> None:
    """A user's flow with the study as one of its steps."""
    optimize_study(
        study_name=study_name, objective="tests.objectives:classifier", storage=storage,
        checkpoints=checkpoints, n_trials=1, max_epochs=1,
    )


def test_a_study_run_as_a_subflow_refuses_and_says_to_use_run_deployment(tmp_path):
    name = f"step-{uuid.uuid4().hex[:6]}"
    with pytest.raises(ConfigurationError, match="optimize_study cannot run as a subflow") as error:
        pipeline(name, f"sqlite:///{tmp_path}/s.db", str(tmp_path / "ckpt"))
    message = str(error.value)
    assert "Prefect cannot suspend a subflow" in message
    assert 'prefect.deployments.run_deployment("pausable-study/<deployment>"' in message
    assert "as_subflow=False, timeout=0" in message
    assert list(tmp_path.iterdir()) == [], "nothing was created"
    with get_client(sync_client=True) as client:
        (study_run,) = client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[name])))
    assert study_run.state.name == "Failed"  # what the subflow's page shows
    assert "optimize_study cannot run as a subflow" in study_run.state.message
