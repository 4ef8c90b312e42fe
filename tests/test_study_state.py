"""A study's sampler shared by several processes continues one stored sequence."""

from __future__ import annotations

import subprocess
import sys
import time

import optuna
from optuna.samplers import RandomSampler

from prefect_intermission.study.state import StudyState, open_storage

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


_OPEN_NEW_DATABASES = """
import sys, time
import optuna
from prefect_intermission.study.state import open_storage
folder, start_at = sys.argv[1], float(sys.argv[2])
for number in range(10):  # both processes open each new database at the same instant
    time.sleep(max(0.0, start_at + number / 2 - time.time()))
    optuna.create_study(study_name="shared", storage=open_storage(f"sqlite:///{folder}/new-{number}.db"),
                        load_if_exists=True)
"""


def test_two_processes_opening_a_new_database_at_once_both_succeed(tmp_path):
    # Both create Optuna's schema; without retrying, the slower fails on the version row.
    start_at = str(time.time() + 15)  # after both have imported Optuna and Prefect
    processes = [
        subprocess.Popen([sys.executable, "-c", _OPEN_NEW_DATABASES, str(tmp_path), start_at],
                         stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    errors = [p.communicate(timeout=120)[1] for p in processes]

    assert [p.returncode for p in processes] == [0, 0], errors
    for number in range(10):
        storage = f"sqlite:///{tmp_path}/new-{number}.db"
        assert optuna.load_study(study_name="shared", storage=storage).study_name == "shared"
