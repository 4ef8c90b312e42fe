"""`patience`: a study's trials stop early once their metric stops improving."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from prefect_intermission import ConfigurationError, optimize_study

pytestmark = pytest.mark.usefixtures("prefect_server")

MAX_EPOCHS = 6


def _run(tmp_path, study_name: str, **overrides):
    """A two-trial study of `stalls_after_first_epoch` (best metric at epoch 0, never better after)."""
    storage = f"sqlite:///{tmp_path}/studies.db"
    result = optimize_study(
        study_name=study_name, objective="tests.objectives:stalls_after_first_epoch",
        n_trials=2, max_epochs=MAX_EPOCHS, storage=storage, checkpoints=str(tmp_path / "checkpoints"),
        seed=1, sampler="random", pruner="none", **overrides,
    )
    return result, optuna.load_study(study_name=study_name, storage=storage).trials


def test_patience_ends_every_trial_that_many_epochs_after_its_best(tmp_path):
    result, trials = _run(tmp_path, "patient", patience=2)
    assert result["status"] == "completed"
    assert len(trials) == 2
    for trial in trials:
        # Epoch 0 was best; epochs 1 and 2 did not improve on it: stopped after epoch 2.
        assert trial.state == TrialState.COMPLETE
        assert sorted(trial.intermediate_values) == [0, 1, 2]
        assert trial.value == 1.0

    # The same study without patience trains every epoch.
    result, trials = _run(tmp_path, "impatient")
    assert result["status"] == "completed"
    assert len(trials) == 2
    for trial in trials:
        assert trial.state == TrialState.COMPLETE
        assert sorted(trial.intermediate_values) == list(range(MAX_EPOCHS))
        assert trial.value == 1.0


def test_patience_below_one_is_refused_before_any_work(tmp_path):
    with pytest.raises(ConfigurationError, match=r"training.patience = 0: Input should be greater than or equal to 1"):
        _run(tmp_path, "never-patient", patience=0)
    assert not (tmp_path / "studies.db").exists()  # no study created
    assert not (tmp_path / "checkpoints").exists()  # nothing trained
