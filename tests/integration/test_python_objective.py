"""`optimize_study(objective=my_function)` from Python: the study runs the function, and its run
records the function's import path, which a resume and `intermission status` read."""

from __future__ import annotations

import uuid

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

from prefect_intermission import optimize_study
from prefect_intermission.errors import ConfigurationError, ObjectiveImportError
from prefect_intermission.study.flow_runs import latest_runs, study_config_of
from prefect_intermission.study.config import StudyConfig
from tests.objectives import classifier

pytestmark = pytest.mark.usefixtures("prefect_server")


def test_a_study_of_a_function_given_itself_runs_it_and_records_where_it_is(tmp_path):
    name = f"callable-{uuid.uuid4().hex[:6]}"
    result = optimize_study(
        study_name=name, objective=classifier, storage=f"sqlite:///{tmp_path}/s.db",
        checkpoints=str(tmp_path / "ckpt"), n_trials=2, max_epochs=1, seed=3,
    )
    assert result["status"] == "completed" and result["finished_trials"] == 2
    with get_client(sync_client=True) as client:
        [run] = client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[name])))
    assert run.parameters["objective"] == "tests.objectives:classifier"
    assert StudyConfig.from_run_parameters(run.parameters).objective == "tests.objectives:classifier"


def test_a_lambda_is_refused_before_any_work_and_its_run_can_still_be_read(tmp_path):
    name = f"lambda-{uuid.uuid4().hex[:6]}"
    with pytest.raises(ObjectiveImportError, match="define it with `def` at the top level of a module"):
        optimize_study(study_name=name, objective=lambda trial, loop: 0.0, storage=f"sqlite:///{tmp_path}/s.db",
                       checkpoints=str(tmp_path / "ckpt"))
    assert list(tmp_path.iterdir()) == []
    # Prefect stored the function as `{}`: `intermission status` and the others still read the run.
    [run] = latest_runs(name)
    assert run.parameters["objective"] == {} and study_config_of(run).study_name == name


def test_a_function_of_the_running_script_is_refused_for_trial_runs_on_other_workers():
    parameters = {"study_name": "s", "objective": "__main__:objective", "trial_deployment": "pausable-trial/train-trial"}
    with pytest.raises(ConfigurationError, match="the trial runs on other workers cannot import"):
        StudyConfig.build(parameters)
