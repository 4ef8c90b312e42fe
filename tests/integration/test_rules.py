"""Pause rules: checked at every epoch boundary, they pause the study, which then continues."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from prefect_intermission import ConfigurationError, optimize_study
from prefect_intermission.study.state import TRIAL_PAUSED_EPOCH_ATTR, pause_history

pytestmark = pytest.mark.usefixtures("prefect_server")


def _run(tmp_path, **overrides):
    return optimize_study(
        study_name="ruled", objective="tests.objectives:slow_classifier", n_trials=2, max_epochs=5,
        storage=f"sqlite:///{tmp_path}/s.db", checkpoints=str(tmp_path / "ckpt"), seed=2, **overrides,
    )


def _study(tmp_path):
    return optuna.load_study(study_name="ruled", storage=f"sqlite:///{tmp_path}/s.db")


def test_a_metric_threshold_pauses_at_the_boundary_where_it_is_met(tmp_path):
    rule = {"rule": "prefect_intermission.pausing.rules:metric_threshold", "threshold": 100.0}
    result = _run(tmp_path, pause_rules=[rule])
    assert result["status"] == "paused"
    study = _study(tmp_path)
    pause = pause_history(study)[0]
    assert pause["reason"].startswith("rule: trial 0 reached metric") and "<= 100" in pause["reason"]
    assert study.trials[0].state == TrialState.RUNNING
    assert study.trials[0].system_attrs[TRIAL_PAUSED_EPOCH_ATTR] == 0  # the very first boundary
    assert len(study.trials) == 1


    # Run again with the same rule: trial 0 trains on although it stays below the threshold;
    # trial 1 pauses the study once, at its own first epoch.
    assert _run(tmp_path, pause_rules=[rule])["status"] == "paused"
    study = _study(tmp_path)
    assert study.trials[0].state == TrialState.COMPLETE
    assert sorted(study.trials[0].intermediate_values) == [0, 1, 2, 3, 4]
    assert pause_history(study)[-1]["reason"].startswith("rule: trial 1 reached metric")
    assert pause_history(study)[-1]["trials"] == {"1": 0}

    assert _run(tmp_path, pause_rules=[rule])["status"] == "completed"
    study = _study(tmp_path)
    assert [t.state.is_finished() for t in study.trials] == [True, True]
    assert len(pause_history(study)) == 2


def test_a_wall_clock_budget_pauses_once_spent(tmp_path):
    rule = {"rule": "prefect_intermission.pausing.rules:wall_clock_budget", "seconds": 0.5}
    assert _run(tmp_path, pause_rules=[rule])["status"] == "paused"
    pause = pause_history(_study(tmp_path))[0]
    assert pause["reason"] == "rule: wall-clock budget of 0.5 s spent"
    assert 0 <= pause["trials"]["0"] < 4


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ([{"seconds": 1}], r"pause_rules\[0\] must be a mapping with a 'rule' import path"),
        ([{"rule": "prefect_intermission.pausing.rules:wall_clock_budget", "minutes": 1}], r"pause_rules\[0\]"),
        ([{"rule": "prefect_intermission.pausing.rules:wall_clock_budget", "seconds": 0}], "seconds > 0"),
        ([{"rule": "prefect_intermission.pausing.rules:metric_threshold", "threshold": 1, "direction": "up"}], "direction"),
        ([{"rule": "prefect_intermission.pausing.rules:metric_threshold", "threshold": "0.05"}],
         r"metric_threshold needs threshold to be a finite number \(in JSON: no quotes\), but got '0.05'"),
        ([{"rule": "prefect_intermission.pausing.rules:wall_clock_budget", "seconds": "60"}], "needs seconds to be a finite"),
    ],
)
def test_bad_rules_are_refused_before_work(tmp_path, rules, message):
    with pytest.raises(ConfigurationError, match=message):
        _run(tmp_path, pause_rules=rules)
    assert not (tmp_path / "s.db").exists()


def broken_rule():
    """A user's rule with a bug in it."""
    return lambda context: context.no_such_field


def test_a_rule_that_raises_pauses_the_study_and_fails_no_trial(tmp_path):
    result = _run(tmp_path, pause_rules=[{"rule": "tests.integration.test_rules:broken_rule"}])
    assert result["status"] == "paused"
    study = _study(tmp_path)
    assert pause_history(study)[0]["reason"] == "rule-error: AttributeError"
    assert [t.state for t in study.trials] == [TrialState.RUNNING]
    assert _run(tmp_path)["status"] == "completed"  # run again without the broken rule
    done = _study(tmp_path).trials
    assert len(done) == 2 and all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in done)
