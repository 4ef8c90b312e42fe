"""One configuration per study: the flow's parameters, their defaults, and what a run says about its study."""

from __future__ import annotations

import inspect
import logging

import pytest
from pydantic import ValidationError

from prefect_intermission.blocks.pause_policy import PausePolicy
from prefect_intermission.errors import ConfigurationError, ObjectiveImportError
from prefect_intermission.flows.study import optimize_study
from prefect_intermission.study.config import StudyConfig


def test_the_flow_offers_every_setting_of_the_config_with_the_same_default():
    flow_parameters = inspect.signature(optimize_study.fn).parameters
    assert set(flow_parameters) == set(StudyConfig.model_fields)
    for name, parameter in flow_parameters.items():
        if parameter.default is inspect.Parameter.empty:
            assert StudyConfig.model_fields[name].is_required(), name
        elif name in ("pause_rules", "objective_params", "catch", "callbacks", "enqueue"):
            # None in the form, empty in the config
            assert parameter.default is None and not StudyConfig.default(name), name
        else:
            assert parameter.default == StudyConfig.default(name), name


def test_a_run_of_an_older_version_is_read_with_defaults_for_what_it_lacks_or_cannot_say():
    config = StudyConfig.from_run_parameters(
        {"study_name": "s", "objective": "m:f", "storage": "sqlite:///x.db", "n_trials": "many", "gone": 1}
    )
    assert (config.storage, config.n_trials, config.checkpoints) == ("sqlite:///x.db", 20, ".intermission/checkpoints")


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"n_trials": 0}, "n_trials must be >= 1, but got n_trials=0"),
        ({"keep_checkpoints": 0}, "keep_checkpoints must be >= 1, but got keep_checkpoints=0"),
        ({"patience": 0}, "patience must be >= 1"),
        ({"max_concurrent_trials": 17}, "max_concurrent_trials must be between 1 and 16"),
    ],
)
def test_values_a_study_cannot_run_with_are_refused_by_name(change, says):
    with pytest.raises(ConfigurationError, match=says):
        StudyConfig(study_name="s", objective="m:f", **change).check()


def test_a_policy_saved_with_a_checkpoint_location_still_sets_it_and_says_it_is_deprecated(caplog):
    config = StudyConfig(study_name="s", objective="m:f", checkpoints="/param", keep_checkpoints=2)
    legacy = PausePolicy(checkpoints="s3://bucket/legacy", keep_checkpoints=5)
    with caplog.at_level(logging.WARNING, logger="prefect_intermission.study.config"):
        moved = config.with_policy_location(legacy)
    assert (moved.checkpoints, moved.keep_checkpoints) == ("s3://bucket/legacy", 5)
    assert "deprecated" in caplog.text and "`checkpoints`" in caplog.text
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
    assert StudyConfig(study_name="s", objective="m:f", pause_policy=policy).pause_policy == "nightly"
    with pytest.raises(ValidationError, match=r"pause_policy is a PausePolicy that was never saved: save it"):
        StudyConfig(study_name="s", objective="m:f", pause_policy=PausePolicy())
