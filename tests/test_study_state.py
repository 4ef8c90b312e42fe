"""A study's sampler shared by several processes continues one stored sequence."""

from __future__ import annotations

import optuna
from optuna.samplers import RandomSampler

from prefect_intermission.study_state import StudyState, open_storage

KEY = b"k" * 32


def _process(url: str) -> StudyState:
    """What a process training the study sees: the study loaded from storage."""
    storage = open_storage(url)
    study = optuna.create_study(
        study_name="shared", storage=storage, sampler=RandomSampler(seed=5), load_if_exists=True
    )
    return StudyState(study, engine=storage.engine, signing_key=KEY)


def _draw(state: StudyState) -> float:
    with state.sampler_lock:
        value = state.study.ask().suggest_float("x", 0.0, 1.0)
        state.save_sampler()
    return value


def test_processes_sharing_the_sampler_draw_the_one_sequence_in_turn(tmp_path):
    reference = optuna.create_study(sampler=RandomSampler(seed=5))
    expected = [reference.ask().suggest_float("x", 0.0, 1.0) for _ in range(4)]

    url = f"sqlite:///{tmp_path}/studies.db"
    first, second = _process(url), _process(url)
    first.save_sampler()
    first.share_sampler("process 1")
    second.share_sampler("process 2")
    drawn = [_draw(first), _draw(second), _draw(second), _draw(first)]

    assert drawn == expected  # without sharing, the second process would repeat the first's draws
