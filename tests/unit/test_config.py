"""One configuration per study: the flow's parameters, their defaults, and what a run says about its study."""

from __future__ import annotations

import inspect
import json
import logging

import pytest
from prefect.utilities.callables import parameter_docstrings
from pydantic import ValidationError

from prefect_intermission.blocks.pause_policy import PausePolicy
from prefect_intermission.errors import ConfigurationError, ObjectiveImportError
from prefect_intermission.flows.study import optimize_study
from prefect_intermission.study.config import SETTING_GROUPS, StudyConfig


def test_the_flow_takes_the_configs_groups_with_their_defaults_and_descriptions():
    flow_parameters = inspect.signature(optimize_study.fn).parameters
    assert list(flow_parameters) == list(StudyConfig.model_fields)
    described = parameter_docstrings(inspect.getdoc(optimize_study.fn))
    for name, group in SETTING_GROUPS.items():
        assert flow_parameters[name].default == group(), name
        assert described[name].split() == group.__doc__.split(), name  # what the run form shows above the group
        for field, info in group.model_fields.items():
            assert info.description and info.description.endswith("."), f"{name}.{field} is not described"


def test_settings_given_flat_as_earlier_releases_took_them_land_in_their_groups():
    config = StudyConfig(study_name="s", objective="m:f", n_trials=3, max_epochs=4, pause_policy="p", catch=None)
    assert (config.budget.n_trials, config.training.max_epochs, config.pausing.pause_policy) == (3, 4, "p")
    assert config.training.catch == []  # None was "the default"
    mixed = StudyConfig(study_name="s", objective="m:f", budget={"timeout": 60}, n_trials=3)
    assert (mixed.budget.n_trials, mixed.budget.timeout) == (3, 60)
    # A setting given on its own goes over its group's value (and leaves the group's other settings).
    overridden = StudyConfig(study_name="s", objective="m:f", budget={"n_trials": 2, "timeout": 60}, n_trials=3)
    assert (overridden.budget.n_trials, overridden.budget.timeout) == (3, 60)


def test_a_run_of_an_older_version_is_read_with_defaults_for_what_it_lacks_or_cannot_say():
    config = StudyConfig.from_run_parameters(
        {"study_name": "s", "objective": "m:f", "storage": "sqlite:///x.db", "n_trials": "many", "gone": 1}
    )
    assert (config.execution.storage, config.budget.n_trials, config.checkpointing.checkpoints) == (
        "sqlite:///x.db", 20, ".intermission/checkpoints"
    )
    grouped = StudyConfig.from_run_parameters(
        {"study_name": "s", "objective": "m:f", "budget": {"n_trials": 7, "timeout": "soon"}}
    )
    assert (grouped.budget.n_trials, grouped.budget.timeout) == (7, None)


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"n_trials": 0}, r"budget.n_trials = 0: Input should be greater than or equal to 1 \(Finished trials wanted"),
        ({"keep_checkpoints": 0}, r"checkpointing.keep_checkpoints = 0: Input should be greater than or equal to 1"),
        ({"patience": 0}, r"training.patience = 0: Input should be greater than or equal to 1 \(Stop a trial early"),
        ({"max_concurrent_trials": 17}, r"execution.max_concurrent_trials = 17: Input should be less than or equal to 16"),
        ({"timeout": float("inf")}, r"budget.timeout = inf: Input should be a finite number"),
        ({"directions": []}, r"search.directions = \[\]: List should have at least 1 item"),
        ({"direction": "maximize", "directions": ["minimize"]}, r"give either direction or directions, not both"),
        ({"sampler": "NoSuchSampler"}, r"search.sampler = .NoSuchSampler.: Unknown sampler .NoSuchSampler."),
        ({"catch": ["NoSuchError"]}, r"catch lists 'NoSuchError', which names no exception class"),
        ({"objective_params": {"f": object()}}, r"objective_params must be a JSON object"),
    ],
)
def test_values_a_study_cannot_run_with_are_refused_by_name_value_and_purpose(change, says):
    with pytest.raises(ConfigurationError, match=says):
        StudyConfig.build({"study_name": "s", "objective": "m:f", **change})


def test_each_setting_is_checked_once_in_its_model_whoever_builds_it():
    from prefect_intermission.training.trial_settings import TrainingSettings

    with pytest.raises(ConfigurationError, match=r"max_epochs = 0: Input should be greater than or equal to 1"):
        TrainingSettings.of(max_epochs=0)  # as TrialLoop(..., max_epochs=0) builds it
    with pytest.raises(ValidationError, match="pause_granularity"):
        TrainingSettings(pause_granularity="batch")


def test_a_policy_saved_with_a_checkpoint_location_still_sets_it_and_says_it_is_deprecated(caplog):
    config = StudyConfig(study_name="s", objective="m:f", checkpoints="/param", keep_checkpoints=2)
    legacy = PausePolicy(checkpoints="s3://bucket/legacy", keep_checkpoints=5)
    with caplog.at_level(logging.WARNING, logger="prefect_intermission.study.config"):
        moved = config.with_policy_location(legacy)
    assert (moved.checkpointing.checkpoints, moved.checkpointing.keep_checkpoints) == ("s3://bucket/legacy", 5)
    assert "deprecated" in caplog.text and "`checkpointing.checkpoints`" in caplog.text
    assert config.with_policy_location(PausePolicy()) == config  # a new policy leaves the parameters alone


def test_an_objective_given_as_a_function_is_kept_as_the_path_that_imports_it():
    from tests.objectives import classifier

    assert StudyConfig(study_name="s", objective=classifier).objective == "tests.objectives:classifier"


def _defines_its_objective_inside():
    def objective(trial, loop):
        return 0.0

    return objective


@pytest.mark.parametrize(
    ("objective", "says"),
    [
        (lambda trial, loop: 0.0, r"'<lambda>' cannot be imported by the process that resumes the study \(a lambda\)"),
        (_defines_its_objective_inside(), r"_defines_its_objective_inside\(\) defines it inside itself"),
        (42, r"objective must be a function or 'package.module:function', but got 42"),
    ],
)
def test_an_objective_no_other_process_could_import_is_refused_saying_why(objective, says):
    with pytest.raises(ObjectiveImportError, match=says):
        StudyConfig(study_name="s", objective=objective)


def test_a_block_given_itself_is_kept_as_the_name_it_is_saved_under():
    policy = PausePolicy()
    policy._block_document_name = "nightly"  # as Prefect loads the block chosen in the run form
    assert StudyConfig(study_name="s", objective="m:f", pause_policy=policy).pausing.pause_policy == "nightly"
    with pytest.raises(ValidationError, match=r"pause_policy is a PausePolicy that was never saved: save it"):
        StudyConfig(study_name="s", objective="m:f", pause_policy=PausePolicy())


def test_the_sites_parameter_table_is_the_one_generated_from_the_settings():
    from pathlib import Path

    from prefect_intermission.study.parameter_table import parameter_table

    page = (Path(__file__).resolve().parents[2] / "docs" / "reference" / "parameters.md").read_text()
    generated = page.split("<!-- parameter-table:", 1)[1].split("-->\n", 1)[1].split("<!-- /parameter-table -->")[0]
    assert generated == parameter_table(), "run `make docs-reference`"
    for group, model in SETTING_GROUPS.items():
        for name in model.model_fields:
            assert f"`{group}.{name}`" in generated


def test_reading_a_runs_settings_back_runs_none_of_the_users_code_and_changes_nothing(monkeypatch):
    import tests.objectives as objectives

    called = []
    monkeypatch.setattr(objectives, "record_call", lambda **kwargs: called.append(kwargs), raising=False)
    parameters = {
        "study_name": "s", "objective": "m:f",
        "search": {"callbacks": ["tests.objectives:record_call"], "sampler": "tests.objectives:record_call"},
        "training": {"max_epochs": 3, "catch": ["NoSuchError"]},
    }
    snapshot = json.dumps(parameters, sort_keys=True)
    config = StudyConfig.from_run_parameters(parameters)  # as `intermission status` reads a run
    assert called == [] and json.dumps(parameters, sort_keys=True) == snapshot
    assert config.training.max_epochs == 3 and config.training.catch == ["NoSuchError"]
    with pytest.raises(ConfigurationError, match=r"training.catch = .*catch lists 'NoSuchError'"):
        StudyConfig.build({**parameters, "search": {}})  # a run being started checks them
