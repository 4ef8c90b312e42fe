"""The private Optuna API in prefect_intermission/_optuna_internals.py still exists: an Optuna
release that moves it fails here, naming it."""

from __future__ import annotations

import optuna
import pytest

from prefect_intermission import _optuna_internals
from prefect_intermission._optuna_internals import (
    OptunaInternalsChanged,
    check_optuna_internals,
    storage_of,
    study_id_of,
    trial_id_of,
)


def test_the_installed_optuna_has_every_private_name_used():
    check_optuna_internals()


def test_the_accessors_reach_the_study_s_own_storage_and_ids():
    study = optuna.create_study(storage=optuna.storages.InMemoryStorage(), study_name="fenced")
    trial = study.ask()
    storage = storage_of(study)
    assert storage.get_study_id_from_name("fenced") == study_id_of(study)
    assert storage.get_trial(trial_id_of(trial)).number == trial.number
    study.tell(trial, 1.5)
    assert storage.get_trial(trial_id_of(study.trials[0])).value == 1.5


def test_a_moved_name_is_named_with_the_release(monkeypatch):
    monkeypatch.setattr(
        _optuna_internals, "_PRIVATE_ATTRIBUTES", (*_optuna_internals._PRIVATE_ATTRIBUTES, ("optuna.Study", "_gone"))
    )
    with pytest.raises(OptunaInternalsChanged, match=rf"Optuna \({optuna.__version__}\).*optuna\.Study\._gone is gone"):
        check_optuna_internals()
