"""Damaged, deleted or tampered checkpoints and sampler state: fallback, restart and refusal, each recorded."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import pickle
import re
import uuid
from pathlib import Path

import optuna
import pytest
import torch
from prefect.client.orchestration import get_client
from prefect.flow_engine import run_flow
from prefect.states import Pending
from prefect_intermission.study.config import grouped_parameters
from prefect_intermission import CheckpointStore, PauseSignal, optimize_study
from prefect_intermission._signing import signing_key
from prefect_intermission.study.attempt import AttemptSettings, run_trial_attempt
from prefect_intermission.training.trial_settings import TrainingSettings
from prefect_intermission.study.resuming import reattach_trial
from prefect_intermission.study.setup import load_study_state
from prefect_intermission.study.state import (
    REFUSALS_ATTR,
    SAMPLER_ATTR,
    TRIAL_RESUMPTIONS_ATTR,
)

from tests.integration.test_run_story import _execute_again, _logs, _story
from tests.manifests import list_as_written
from tests.objectives import classifier
from tests.signals import PauseAfter
from tests.unit.test_study_state import TouchOnUnpickling, malformed_sampler_state

pytestmark = pytest.mark.usefixtures("prefect_server")  # the signing key is a Secret block

MAX_EPOCHS = 6


def _state(tmp_path, name):
    return load_study_state(
        name, f"sqlite:///{tmp_path}/s.db", seed=5, direction="minimize", sampler="random", pruner="none"
    )


def _attempt(state, store, trial, signal):
    return run_trial_attempt(
        state, trial, classifier, checkpoints=store, settings=AttemptSettings(TrainingSettings(max_epochs=MAX_EPOCHS), study_seed=5),
        pause_signal=signal,
    )


def _reference(tmp_path):
    state = _state(tmp_path, "reference")
    store = CheckpointStore(str(tmp_path / "ref"))
    _attempt(state, store, state.study.ask(), PauseSignal())
    return state.study.trials[0], store.for_trial("reference", 0).load_latest_valid().state


def _paused_after_epoch_3(tmp_path):
    state = _state(tmp_path, "damaged")
    store = CheckpointStore(str(tmp_path / "ckpt"), keep_last=3)
    trial = state.study.ask()
    assert _attempt(state, store, trial, PauseAfter(3)).state == "paused"
    return state, store, trial, store.for_trial("damaged", 0)


def _truncate(path):
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)


def _corrupt(path):
    with open(path, "r+b") as f:
        f.seek(os.path.getsize(path) // 2)
        f.write(b"\x00garbage\x00")


def _tamper(path):  # a well-formed checkpoint with other weights, manifest left alone
    state = torch.load(path, weights_only=True)
    for tensor in state["components"]["model"].values():
        tensor.add_(1.0)
    torch.save(state, path)


DAMAGES = {"truncated": _truncate, "corrupted": _corrupt, "deleted": os.remove, "tampered": _tamper}
PROBLEMS = {
    "truncated": "bytes, the manifest says",
    "corrupted": "does not match its XXH3-128",
    "deleted": "is missing",
    "tampered": "does not match its XXH3-128|bytes, the manifest says",
}


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_a_damaged_latest_checkpoint_falls_back_to_the_previous_one(tmp_path, damage):
    reference, reference_final = _reference(tmp_path)
    state, store, trial, checkpoints = _paused_after_epoch_3(tmp_path)
    DAMAGES[damage](checkpoints.path(3))

    outcome = _attempt(state, store, reattach_trial(state, trial._trial_id), PauseSignal())

    assert outcome.state == "complete"
    record = state.study.trials[0].system_attrs[TRIAL_RESUMPTIONS_ATTR][-1]
    assert record["reason"] == "pause"
    assert record["from_epoch"] == 2
    assert record["lost_epochs"] == [3]
    assert [f["epoch"] for f in record["fallbacks"]] == [3]
    assert re.search(PROBLEMS[damage], record["fallbacks"][0]["problem"])
    # Epoch 3 was trained again from epoch 2's checkpoint: the result is unchanged.
    assert state.study.trials[0].intermediate_values == reference.intermediate_values
    assert state.study.trials[0].value == reference.value
    final = checkpoints.load_latest_valid().state["components"]["model"]
    assert all(torch.equal(final[k], reference_final["components"]["model"][k]) for k in final)


def test_with_no_valid_checkpoint_the_trial_restarts_with_its_parameters(tmp_path):
    reference, _ = _reference(tmp_path)
    state, store, trial, checkpoints = _paused_after_epoch_3(tmp_path)
    params = dict(trial.params)
    for epoch in checkpoints.epochs():
        _corrupt(checkpoints.path(epoch))

    outcome = _attempt(state, store, reattach_trial(state, trial._trial_id), PauseSignal())

    assert outcome.state == "complete"
    done = state.study.trials[0]
    assert done.params == params
    record = done.system_attrs[TRIAL_RESUMPTIONS_ATTR][-1]
    assert record["from_epoch"] is None
    assert [f["epoch"] for f in record["fallbacks"]] == [3, 2, 1]
    assert record["lost_epochs"] == [0, 1, 2, 3]
    assert done.value == reference.value


def test_a_checkpoint_crafted_to_run_code_is_refused_and_nothing_runs(tmp_path):
    state, store, trial, checkpoints = _paused_after_epoch_3(tmp_path)
    marker = tmp_path / f"pwned-{uuid.uuid4().hex}"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = checkpoints.path(3)
    torch.save({"format_version": 1, "payload": Exploit()}, path)
    data = Path(path).read_bytes()
    manifest = json.loads(Path(checkpoints.manifest_path).read_text())
    list_as_written(manifest["checkpoints"][-1], data)
    with open(checkpoints.manifest_path, "w") as f:
        json.dump(manifest, f)  # the attacker can rewrite the manifest too

    outcome = _attempt(state, store, reattach_trial(state, trial._trial_id), PauseSignal())

    assert not marker.exists()
    assert outcome.state == "complete"
    fallback = state.study.trials[0].system_attrs[TRIAL_RESUMPTIONS_ATTR][-1]["fallbacks"][0]
    assert fallback["epoch"] == 3
    assert "cannot be read safely" in fallback["problem"]
    assert "posix.system" in fallback["problem"]
    assert "weights_only` set to `False`" not in fallback["problem"]  # never advise unsafe loading


@pytest.mark.parametrize("tampering", ["unsigned", "resigned-with-another-key"])
def test_a_tampered_sampler_state_is_refused_unloaded_and_recorded(tmp_path, tampering):
    state = _state(tmp_path, "s")
    marker = tmp_path / f"pwned-{uuid.uuid4().hex}"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    data = pickle.dumps(Exploit())
    stored = base64.b64encode(data).decode()
    if tampering == "unsigned":
        value = stored
    else:
        import hmac

        value = {"pickle": stored, "hmac": hmac.new(b"guess", data, hashlib.sha256).hexdigest()}
    state.study._storage.set_study_system_attr(state.study._study_id, SAMPLER_ATTR, value)

    reloaded = _state(tmp_path, "s")

    assert not marker.exists()
    refusals = reloaded.study._storage.get_study_system_attrs(reloaded.study._study_id)[REFUSALS_ATTR]
    assert refusals[-1]["what"] == "sampler"
    assert "not in the signed format" in refusals[-1]["problem"] or "signature" in refusals[-1]["problem"]
    assert isinstance(reloaded.study.sampler, optuna.samplers.RandomSampler)
    reloaded.study.ask()  # the study goes on with its new sampler


# The forms issue 15 names: a signature that is null, a number, a list or non-ASCII text,
# and a pickle field that is not base64.
DAMAGED_SAMPLER_FORMS = [
    "signature null", "signature a number", "signature a list", "signature non-ASCII", "pickle not base64",
]


def test_a_paused_study_whose_sampler_is_damaged_resumes_and_completes(tmp_path):
    """One flow run, paused once at the first epoch of each trial; before each resume its
    stored sampler is replaced by another damaged form, holding a pickle that creates a
    file if loaded. Each is refused, recorded and said on the run's log, and the study
    completes."""
    name = f"damaged-sampler-{uuid.uuid4().hex[:6]}"
    n_trials = len(DAMAGED_SAMPLER_FORMS)
    storage = f"sqlite:///{tmp_path}/s.db"
    parameters = grouped_parameters({
        "study_name": name, "objective": "tests.objectives:classifier", "n_trials": n_trials, "max_epochs": 2,
        "storage": storage, "checkpoints": str(tmp_path / "ckpt"), "seed": 5, "max_concurrent_trials": 1,
        "sampler": "random", "pruner": "none",
        "pause_rules": [{"rule": "tests.integration.test_artifacts:pause_at_first_epoch_of", "trials": list(range(n_trials))}],
    })
    with get_client(sync_client=True) as client:
        flow_run = client.create_flow_run(optimize_study, parameters=parameters, state=Pending())
    assert run_flow(optimize_study, flow_run=flow_run, parameters=parameters)["status"] == "paused"
    marker = tmp_path / "unpickled"
    data = pickle.dumps(TouchOnUnpickling(marker))

    refusals = []
    for number, form in enumerate(DAMAGED_SAMPLER_FORMS):
        study = optuna.load_study(study_name=name, storage=storage)
        damaged, refusal = malformed_sampler_state(form, data, signing_key())
        study._storage.set_study_system_attr(study._study_id, SAMPLER_ATTR, damaged)

        returned = run_flow(optimize_study, flow_run=_execute_again(flow_run.id), parameters=parameters)

        assert returned["status"] == ("completed" if number == n_trials - 1 else "paused"), (form, returned)
        assert not marker.exists(), form
        refusals = study._storage.get_study_system_attrs(study._study_id)[REFUSALS_ATTR]
        assert len(refusals) == number + 1, refusals
        assert refusals[-1]["what"] == "sampler"
        assert refusals[-1]["problem"].startswith(refusal), (form, refusals[-1])

    study = optuna.load_study(study_name=name, storage=storage)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * n_trials
    logs = _logs(flow_run.id)
    for entry in refusals:
        said = f"Study {name!r}: {entry['problem']}; it was not loaded. Continuing with a new sampler."
        assert any(log.message == said for log in logs), f"not on the run's log: {said}\n{_story(logs)}"
