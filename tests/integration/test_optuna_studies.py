"""Every Optuna study: any sampler and pruner (BOHB, CMA-ES), several objectives, failures as
Optuna treats them, objective settings, timeout, callbacks and enqueued trials.

A study paused mid-trial (by a rule at a chosen epoch) and run again must give the same
study, trial by trial, as one that never paused.
"""

from __future__ import annotations

import json
import math

import optuna
import pytest
from optuna.trial import TrialState

from prefect_intermission import IntermissionError, optimize_study
from prefect_intermission.study.state import TRIAL_FAILURE_ATTR, pause_history
from tests.status_study import intermission

pytestmark = pytest.mark.usefixtures("prefect_server")

BOHB = {
    "sampler": {"name": "TPESampler", "n_startup_trials": 3},
    "pruner": {"name": "HyperbandPruner", "min_resource": 1, "max_resource": 4, "reduction_factor": 2},
}
CMA_ES = {"sampler": {"name": "CmaEsSampler", "n_startup_trials": 2}, "pruner": "none"}


def _run(tmp_path, name="searched", *, objective="tests.objectives:classifier", **overrides):
    return optimize_study(**{
        "study_name": name, "objective": objective, "n_trials": 6, "max_epochs": 4,
        "storage": f"sqlite:///{tmp_path}/s.db", "checkpoints": str(tmp_path / "ckpt"), "seed": 7,
        **overrides,
    })


def _study(tmp_path, name="searched") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path}/s.db")


def _trials(study: optuna.Study) -> list[tuple]:
    """What makes two studies the same, trial by trial."""
    return [(t.number, t.state.name, t.params, t.intermediate_values, t.values) for t in study.trials]


def _pause_at(trial: int, epoch: int) -> list[dict]:
    return [{"rule": "tests.objectives:pause_at", "trial": trial, "epoch": epoch}]


@pytest.mark.parametrize("search", [BOHB, CMA_ES], ids=["bohb", "cma-es"])
def test_a_paused_and_resumed_search_is_the_uninterrupted_one_trial_by_trial(tmp_path, search):
    assert _run(tmp_path / "straight", **search)["status"] == "completed"
    straight = _study(tmp_path / "straight")

    paused = tmp_path / "paused"
    assert _run(paused, pause_rules=_pause_at(4, 1), **search)["status"] == "paused"
    assert pause_history(_study(paused))[0]["trials"] == {"4": 1}  # mid-trial, after its second epoch
    assert _run(paused, **search)["status"] == "completed"

    resumed = _study(paused)
    assert _trials(resumed) == _trials(straight)
    assert type(resumed.sampler).__name__ == type(straight.sampler).__name__
    if search is BOHB:  # Hyperband did prune: the pruner's decisions survived the pause too
        assert any(t.state == TrialState.PRUNED for t in resumed.trials)


def test_a_resume_with_another_pruner_is_refused_unless_allowed(tmp_path):
    assert _run(tmp_path, n_trials=2, pause_rules=_pause_at(0, 0), **BOHB)["status"] == "paused"
    with pytest.raises(IntermissionError, match=r"searches with pruner .*HyperbandPruner.* \(this run: .*MedianPruner"):
        _run(tmp_path, n_trials=2, sampler=BOHB["sampler"], pruner="median")
    result = _run(tmp_path, n_trials=2, sampler=BOHB["sampler"], pruner="median", allow_search_change=True)
    assert result["status"] == "completed"


def test_two_objectives_pause_resume_and_complete_with_a_pareto_front(tmp_path, prefect_server):
    name = "two-objectives"
    settings = {"objective": "tests.objectives:two_objectives", "directions": ["minimize", "minimize"],
                "n_trials": 4, "max_epochs": 3}
    assert _run(tmp_path, name, pause_rules=_pause_at(1, 0), **settings)["status"] == "paused"
    result = _run(tmp_path, name, **settings)
    assert result["status"] == "completed"
    study = _study(tmp_path, name)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 4  # Optuna prunes none of these
    assert all(len(t.values) == 2 and len(t.intermediate_values) == 3 for t in study.trials)
    front = sorted(t.number for t in study.best_trials)
    assert [p["trial"] for p in result["pareto_front"]] == front

    shown = intermission("status", name, "--json", env=prefect_server.env)
    assert shown.returncode == 0, shown.stderr
    [status] = json.loads(shown.stdout)
    assert [(p["trial"], p["values"]) for p in status["pareto_front"]] == [
        (t.number, t.values) for t in sorted(study.best_trials, key=lambda t: t.number)
    ]
    table = intermission("status", name, env=prefect_server.env)
    assert f"Pareto front: {len(front)} trial(s)" in table.stdout
    assert f"Pareto front #{front[0]}:" in table.stdout


def test_nan_listed_exceptions_and_gpu_memory_fail_their_trial_and_the_study_goes_on(tmp_path):
    result = _run(tmp_path, objective="tests.objectives:fails_some_trials", n_trials=4, max_epochs=2,
                  catch=["ValueError"])
    assert result["status"] == "completed" and result["finished_trials"] == 4
    assert result["failed_trials"] == 3
    study = _study(tmp_path)
    states = {t.number: t.state for t in study.trials}
    assert [n for n, s in states.items() if s == TrialState.FAIL] == [1, 3, 4]
    assert sum(s in (TrialState.COMPLETE, TrialState.PRUNED) for s in states.values()) == 4
    failures = {t.number: t.system_attrs[TRIAL_FAILURE_ATTR]["error"] for t in study.trials if t.state == TrialState.FAIL}
    assert "reported metric nan after epoch 1" in failures[1]
    assert "ValueError: bad batch in trial 3 (listed in catch)" in failures[3]
    assert "ran out of GPU memory" in failures[4] and "the study goes on" in failures[4]
    assert all(not math.isnan(v) for t in study.trials for v in t.intermediate_values.values())


def test_an_objective_that_always_fails_stops_the_study_after_max_failed_trials(tmp_path):
    with pytest.raises(IntermissionError, match=r"That makes 3 failed trials in this run \(max_failed_trials=3\)"):
        _run(tmp_path, objective="tests.objectives:always_fails", catch=["ValueError"], max_failed_trials=3)
    assert [t.state for t in _study(tmp_path).trials] == [TrialState.FAIL] * 3


def test_objective_params_reach_the_objective_and_stay_with_the_study(tmp_path):
    params = {"scale": 10.0}
    assert _run(tmp_path, objective="tests.objectives:scaled_classifier", n_trials=2, max_epochs=2,
                objective_params=params, pause_rules=_pause_at(1, 0))["status"] == "paused"
    with pytest.raises(IntermissionError, match=r'was started with objective_params \{"scale": 10.0\}, but this run gives \{"scale": 1.0\}'):
        _run(tmp_path, objective="tests.objectives:scaled_classifier", n_trials=2, max_epochs=2,
             objective_params={"scale": 1.0})
    assert _run(tmp_path, objective="tests.objectives:scaled_classifier", n_trials=2, max_epochs=2,
                objective_params=params)["status"] == "completed"
    assert [t.user_attrs["scale_seen"] for t in _study(tmp_path).trials] == [10.0, 10.0]


def test_callbacks_see_every_finished_trial_and_enqueued_trials_come_first(tmp_path):
    log = tmp_path / "finished.txt"
    enqueued = [{"lr": 0.01, "hidden": 8}, {"lr": 0.2, "hidden": 30}]
    settings = {"n_trials": 3, "max_epochs": 2, "pruner": "none", "enqueue": enqueued,
                "callbacks": [{"callback": "tests.objectives:record_finished_trials", "path": str(log)}]}
    assert _run(tmp_path, pause_rules=_pause_at(1, 0), **settings)["status"] == "paused"
    assert _run(tmp_path, **settings)["status"] == "completed"  # enqueued again: not queued twice
    study = _study(tmp_path)
    assert [t.params for t in study.trials[:2]] == enqueued
    assert len(study.trials) == 3
    assert log.read_text().splitlines() == ["0 COMPLETE", "1 COMPLETE", "2 COMPLETE"]


def test_timeout_counts_training_across_pauses_and_completes_with_what_it_has(tmp_path):
    settings = {"objective": "tests.objectives:slow_classifier", "n_trials": 50, "max_epochs": 2, "timeout": 2.0}
    assert _run(tmp_path, pause_rules=_pause_at(0, 0), **settings)["status"] == "paused"
    result = _run(tmp_path, **settings)
    assert result["status"] == "completed" and result["timed_out"] is True
    finished = result["finished_trials"]
    assert 1 <= finished < 50
    study = _study(tmp_path)
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.trials)  # none left behind
    assert len(study.trials) == finished
