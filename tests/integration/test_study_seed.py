"""A study's seed: drawn for a new study that gives none (as Optuna draws one), recorded with it,
and the one every later run continues with, so a resumed search repeats what an uninterrupted
one would."""

from __future__ import annotations

import uuid

import optuna
import pytest

from prefect_intermission import ConfigurationError, optimize_study
from prefect_intermission.study.attempt import trial_seed
from prefect_intermission.study.setup import LEGACY_DEFAULT_SEED, load_study_state
from prefect_intermission.study.state import TRIAL_SEED_ATTR, study_seed

pytestmark = pytest.mark.usefixtures("prefect_server")  # the signing key is a Secret block


def _load(tmp_path, name, seed):
    return load_study_state(name, f"sqlite:///{tmp_path}/s.db", seed=seed, sampler="random", pruner="none")


def test_a_new_study_without_a_seed_draws_one_and_keeps_it(tmp_path):
    first, other = _load(tmp_path, "a", None), _load(tmp_path, "b", None)
    assert isinstance(first.seed(), int) and first.seed() != other.seed(), "each new study draws its own"
    suggested = first.study.ask().suggest_float("x", 0, 1)
    first.save_sampler()
    again = _load(tmp_path, "a", None)
    assert again.seed() == first.seed()
    assert _load(tmp_path, "a", first.seed()).seed() == first.seed(), "giving the recorded seed is fine too"
    # The sampler drawn with that seed was the one stored: a fresh one with the seed repeats it.
    fresh = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=first.seed()))
    assert fresh.ask().suggest_float("x", 0, 1) == suggested


def test_a_run_with_another_seed_than_the_studys_is_refused_and_changes_nothing(tmp_path):
    state = _load(tmp_path, "s", 5)
    with pytest.raises(ConfigurationError, match=r"started with seed 5, but this run gives seed=6\. .*leave seed empty"):
        _load(tmp_path, "s", 6)
    assert state.seed() == 5 and state.recorded_settings()["seed"] == 5


def _as_an_earlier_release_left_it(tmp_path, name, seed):
    """A study created by a release that did not record seeds (the default then was 0)."""
    state = _load(tmp_path, name, seed)
    settings = state.recorded_settings()
    del settings["seed"]
    state.record_settings(settings)
    return state


def test_a_study_created_before_seeds_were_recorded_keeps_the_default_it_had(tmp_path):
    _as_an_earlier_release_left_it(tmp_path, "old", LEGACY_DEFAULT_SEED)
    assert _load(tmp_path, "old", None).seed() == LEGACY_DEFAULT_SEED == 0
    _as_an_earlier_release_left_it(tmp_path, "old-seeded", 7)
    assert _load(tmp_path, "old-seeded", 7).seed() == 7, "the seed the run gives, as before"
    assert _load(tmp_path, "old-seeded", None).seed() == 7, "and recorded from then on"


def test_a_refused_run_records_no_seed_for_a_study_created_before_seeds_were_recorded(tmp_path):
    state = _as_an_earlier_release_left_it(tmp_path, "old", LEGACY_DEFAULT_SEED)
    with pytest.raises(ConfigurationError, match="Nothing was changed"):
        load_study_state("old", f"sqlite:///{tmp_path}/s.db", seed=9, sampler="random", pruner="none",
                         objective_params={"lr": 1})
    assert "seed" not in state.recorded_settings()
    assert _load(tmp_path, "old", None).seed() == 0


def test_a_study_run_without_a_seed_seeds_its_trials_from_the_recorded_one_in_every_run(tmp_path):
    name, storage = f"seedless-{uuid.uuid4().hex[:6]}", f"sqlite:///{tmp_path}/studies.db"
    run = dict(study_name=name, objective="tests.objectives:classifier", storage=storage,
               checkpoints=str(tmp_path / "ckpt"), max_epochs=1, sampler="random", pruner="none")
    optimize_study(**run, n_trials=1)
    optimize_study(**run, n_trials=2)  # run again for one more trial: the same seed
    study = optuna.load_study(study_name=name, storage=storage)
    seed = study_seed(study)
    assert [t.system_attrs[TRIAL_SEED_ATTR] for t in study.trials] == [trial_seed(seed, 0), trial_seed(seed, 1)]
