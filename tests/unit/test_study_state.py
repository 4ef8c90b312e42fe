"""A study's stored sampler: shared by several processes it continues one stored sequence;
malformed or unsigned, it is refused and nothing is unpickled."""

from __future__ import annotations

import base64
import os
import pickle
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
from optuna.samplers import RandomSampler

from prefect_intermission._signing import sign, verify
from prefect_intermission.study.state import SAMPLER_ATTR, SamplerRefused, StudyState, open_storage

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
    errors = [p.communicate(timeout=50)[1] for p in processes]

    assert [p.returncode for p in processes] == [0, 0], errors
    for number in range(10):
        storage = f"sqlite:///{tmp_path}/new-{number}.db"
        assert optuna.load_study(study_name="shared", storage=storage).study_name == "shared"


# -- a damaged stored sampler ------------------------------------------------------------

_NOT_HEX = "the stored sampler's signature is not a 64-digit hex string"

# Each damaged form of a stored sampler state, built from the base64 of a pickle and that
# pickle's true signature (so that only the form is wrong), with the start of its refusal.
MALFORMED_SAMPLER_STATES: dict[str, Callable[[str, str], tuple[object, str]]] = {
    "signature null": lambda b64, sig: ({"pickle": b64, "hmac": None}, f"{_NOT_HEX} (got None)"),
    "signature a number": lambda b64, sig: ({"pickle": b64, "hmac": 12345}, f"{_NOT_HEX} (got 12345)"),
    "signature a list": lambda b64, sig: ({"pickle": b64, "hmac": [sig]}, f"{_NOT_HEX} (got ['{sig[:2]}"),
    "signature non-ASCII": lambda b64, sig: ({"pickle": b64, "hmac": "é" + sig[1:]}, f"{_NOT_HEX} (got 'é"),
    "signature too short": lambda b64, sig: ({"pickle": b64, "hmac": sig[:32]}, f"{_NOT_HEX} (got '{sig[:32]}')"),
    "pickle a number": lambda b64, sig: (
        {"pickle": 12345, "hmac": sig}, "the stored sampler's pickle is not a base64 string (got 12345)"
    ),
    "pickle not base64": lambda b64, sig: (
        {"pickle": f"{b64[:8]}*{b64[8:]}", "hmac": sig}, "the stored sampler's pickle is not valid base64"
    ),
    "pickle non-ASCII": lambda b64, sig: (
        {"pickle": f"{b64[:8]}é{b64[8:]}", "hmac": sig}, "the stored sampler's pickle is not valid base64"
    ),
    "no signature": lambda b64, sig: ({"pickle": b64}, "the stored sampler state is not in the signed format"),
    "not a mapping": lambda b64, sig: ([b64, sig], "the stored sampler state is not in the signed format"),
}


def malformed_sampler_state(form: str, data: bytes, key: bytes) -> tuple[object, str]:
    """The stored sampler state of `form` holding `data` signed with `key`, and its refusal."""
    return MALFORMED_SAMPLER_STATES[form](base64.b64encode(data).decode("ascii"), sign(data, key))


class TouchOnUnpickling:
    """A pickle that creates a file when loaded, as a crafted one could run any code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _stored(tmp_path: Path, value: object) -> StudyState:
    state = _process(f"sqlite:///{tmp_path}/studies.db")
    state.study._storage.set_study_system_attr(state.study._study_id, SAMPLER_ATTR, value)
    return state


@pytest.mark.parametrize("form", list(MALFORMED_SAMPLER_STATES))
def test_a_malformed_stored_sampler_is_refused_and_nothing_is_unpickled(tmp_path, form):
    marker = tmp_path / "unpickled"
    value, refusal = malformed_sampler_state(form, pickle.dumps(TouchOnUnpickling(marker)), KEY)
    state = _stored(tmp_path, value)

    with pytest.raises(SamplerRefused, match=f"^{re.escape(refusal)}"):
        state.stored_sampler()
    assert not marker.exists()


def test_the_same_pickle_well_formed_and_signed_is_unpickled(tmp_path):
    """What the marker of the test above shows: a well-formed, signed pickle is loaded."""
    marker = tmp_path / "unpickled"
    data = pickle.dumps(TouchOnUnpickling(marker))
    state = _stored(tmp_path, {"pickle": base64.b64encode(data).decode("ascii"), "hmac": sign(data, KEY)})

    state.stored_sampler()
    assert marker.exists()


@pytest.mark.parametrize("form", ["signature null", "signature a number", "signature a list",
                                  "signature non-ASCII", "signature too short"])
def test_verify_says_no_to_a_malformed_signature_instead_of_raising(form):
    value, _ = malformed_sampler_state(form, b"data", KEY)
    assert verify(b"data", value["hmac"], KEY) is False
    assert verify(b"data", sign(b"data", KEY), KEY) is True
