"""The trial scheduler: an error outside the objective pauses the study instead of losing the trial."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState
from sqlalchemy.exc import OperationalError

from prefect_intermission import optimize_study
from prefect_intermission.study.state import TRIAL_PAUSED_EPOCH_ATTR, StudyState, pause_history

pytestmark = pytest.mark.usefixtures("prefect_server")


def _run(tmp_path):
    return optimize_study(
        study_name="shaky", objective="tests.objectives:classifier", n_trials=2, max_epochs=3,
        storage=f"sqlite:///{tmp_path}/s.db", checkpoints=str(tmp_path / "ckpt"), seed=2,
    )


def test_a_storage_error_after_training_pauses_the_study_and_the_trial_continues(tmp_path, monkeypatch):
    def database_gone(self, trial_id, seconds):
        raise OperationalError("UPDATE trial_system_attributes", {}, Exception("database is locked"))

    monkeypatch.setattr(StudyState, "record_epoch_seconds", database_gone)
    assert _run(tmp_path)["status"] == "paused"
    study = optuna.load_study(study_name="shaky", storage=f"sqlite:///{tmp_path}/s.db")
    assert pause_history(study)[0]["reason"] == "trial-error"
    (trial,) = study.trials
    assert trial.state == TrialState.RUNNING  # not FAIL: its checkpoints are still used
    assert trial.system_attrs[TRIAL_PAUSED_EPOCH_ATTR] == 2

    monkeypatch.undo()
    assert _run(tmp_path)["status"] == "completed"
    study = optuna.load_study(study_name="shaky", storage=f"sqlite:///{tmp_path}/s.db")
    assert [t.number for t in study.trials] == [0, 1]
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.trials)
    assert sorted(study.trials[0].intermediate_values) == [0, 1, 2]
