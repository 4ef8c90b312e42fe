"""Checkpoints written in the background: the training thread copies the state and goes on;
pauses, reads, reports and the next checkpoint wait for the write; its errors are raised."""

from __future__ import annotations

import os
import threading

import optuna
import pytest
import torch

from prefect_intermission import CheckpointError, CheckpointStore, PauseSignal, TrialLoop, TrialPaused
from prefect_intermission.training._background import snapshot
from prefect_intermission.training._rng import seed_everything
from prefect_intermission.training.checkpoints import TrialCheckpoints
from tests.objectives import classifier
from tests.signals import PauseAfter


class Gate(threading.Event):
    """Holds background writes before their first byte until `set()`; with `epochs`, only those epochs'."""

    epochs: set[int] | None = None


@pytest.fixture
def gate(monkeypatch):
    """A `Gate` every background write passes (opened at teardown)."""
    opened = Gate()
    write = TrialCheckpoints._write

    def gated(self, epoch, *args, **kwargs):
        if kwargs.get("in_background") and (opened.epochs is None or epoch in opened.epochs):
            assert opened.wait(30), "the gate was never opened"
        return write(self, epoch, *args, **kwargs)

    monkeypatch.setattr(TrialCheckpoints, "_write", gated)
    yield opened
    opened.set()


def _open_later(gate: threading.Event, seconds: float = 0.3) -> threading.Timer:
    timer = threading.Timer(seconds, gate.set)
    timer.start()
    return timer


def _trial(tmp_path, number: int = 0) -> TrialCheckpoints:
    return CheckpointStore(str(tmp_path / "ckpt")).for_trial("study", number)


def _reader(trial: TrialCheckpoints) -> TrialCheckpoints:
    """Another view of the same trial's checkpoints, as a resumed process has."""
    return TrialCheckpoints(trial.fs, trial.folder, trial.keep_last)


def test_the_training_thread_goes_on_and_the_stored_state_is_the_one_at_the_boundary(tmp_path, gate):
    trial = _trial(tmp_path)
    weights = torch.arange(6.0)
    tied = weights[2:4]  # a view of the same storage, as tied weights are
    state = {"model": {"w": weights, "tied": tied}, "seconds": [1.0], "note": "epoch 0"}
    path = trial.save_in_background(0, state)
    assert not os.path.exists(path)  # nothing written yet: the call did not wait for the write
    weights.add_(100.0)  # the next epoch trains on at once
    state["seconds"].append(2.0)
    gate.set()
    trial.wait()
    stored = _reader(trial).load_latest_valid().state
    assert torch.equal(stored["model"]["w"], torch.arange(6.0))
    assert stored["seconds"] == [1.0]
    assert stored["model"]["tied"].untyped_storage().data_ptr() == stored["model"]["w"].untyped_storage().data_ptr()


def test_a_copy_shares_storage_as_the_original_does_and_lives_on_the_cpu():
    weights = torch.arange(8.0)
    copied = snapshot({"a": weights, "b": weights[4:], "c": (weights, 3), "d": None})
    assert torch.equal(copied["a"], weights) and torch.equal(copied["b"], weights[4:])
    assert copied["a"].data_ptr() != weights.data_ptr()
    assert copied["b"].untyped_storage().data_ptr() == copied["a"].untyped_storage().data_ptr()
    assert copied["c"][0].untyped_storage().data_ptr() == copied["a"].untyped_storage().data_ptr()
    assert copied["a"].device.type == "cpu" and copied["d"] is None


def test_reading_a_trials_checkpoints_waits_for_its_pending_write(tmp_path, gate):
    trial = _trial(tmp_path)
    trial.save(0, {"w": torch.zeros(2)})
    trial.save_in_background(1, {"w": torch.ones(2)})
    _open_later(gate)
    loaded = trial.load_latest_valid()  # called while the write is held at the gate
    assert loaded.epoch == 1 and torch.equal(loaded.state["w"], torch.ones(2))


def test_a_second_checkpoint_waits_for_the_first_one_so_one_copy_at_most_is_pending(tmp_path, gate):
    trial = _trial(tmp_path)
    trial.save_in_background(0, {"w": torch.zeros(2)})
    _open_later(gate)
    trial.save_in_background(1, {"w": torch.ones(2)})
    assert os.path.exists(trial.path(0))  # the first was written before the second was taken
    trial.wait()
    assert _reader(trial).epochs() == [0, 1]


def test_a_failed_background_write_is_raised_at_the_next_wait_and_the_previous_checkpoint_stays(
    tmp_path, monkeypatch
):
    trial = _trial(tmp_path)
    trial.save(0, {"w": torch.zeros(2)})

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    trial.save_in_background(1, {"w": torch.ones(2)})  # returns: the error is the writer's
    with pytest.raises(CheckpointError, match="No space left on device"):
        trial.wait()
    monkeypatch.undo()
    assert sorted(os.listdir(trial.folder)) == ["epoch-00000.pt", "manifest.json"]
    loaded = trial.load_latest_valid()
    assert loaded.epoch == 0 and torch.equal(loaded.state["w"], torch.zeros(2))


def test_a_failed_background_write_is_raised_by_a_load_not_taken_for_damage(tmp_path, monkeypatch):
    trial = _trial(tmp_path)
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(5, "Input/output error")))
    trial.save_in_background(0, {"w": torch.ones(2)})
    with pytest.raises(CheckpointError, match="Input/output error"):
        trial.load_latest_valid()


def _study(tmp_path, name: str) -> optuna.Study:
    return optuna.create_study(
        study_name=name, storage=f"sqlite:///{tmp_path}/{name}.db",
        sampler=optuna.samplers.RandomSampler(seed=3), pruner=optuna.pruners.NopPruner(),
    )


def test_a_pause_stops_the_trial_only_once_its_checkpoint_is_stored(tmp_path, gate):
    store = CheckpointStore(str(tmp_path / "ckpt"))
    trial = _study(tmp_path, "paused").ask()
    loop = TrialLoop(trial, store.for_trial("paused", 0), max_epochs=6, seed=11, pause_signal=PauseAfter(2),
                     background_checkpoints=True)
    gate.epochs = {2}  # the pausing epoch's write is held; the others are written as they come
    loop.on_epoch = lambda epoch, metric: epoch == 2 and _open_later(gate)
    with pytest.raises(TrialPaused) as paused:
        classifier(trial, loop)
    assert paused.value.epoch == 2
    assert store.for_trial("paused", 0).last_epoch() == 2  # stored when TrialPaused was raised


def test_background_and_synchronous_checkpoints_hold_the_same_training(tmp_path):
    store = CheckpointStore(str(tmp_path / "ckpt"))
    weights = {}
    for background in (True, False):
        name = f"background-{background}"
        trial = _study(tmp_path, name).ask()
        loop = TrialLoop(trial, store.for_trial(name, 0), max_epochs=4, seed=11, background_checkpoints=background)
        assert loop.context.background_checkpoints is background
        seed_everything(5)
        classifier(trial, loop)
        loaded = store.for_trial(name, 0).load_latest_valid()
        assert loaded.epoch == 3
        weights[background] = loaded.state["components"]["model"]
    assert weights[True].keys() == weights[False].keys()
    assert all(torch.equal(weights[True][k], weights[False][k]) for k in weights[True])


def test_the_setting_turns_background_checkpoints_off(tmp_path, monkeypatch):
    monkeypatch.setenv("INTERMISSION_BACKGROUND_CHECKPOINTS", "false")
    trial = _study(tmp_path, "off").ask()
    store = CheckpointStore(str(tmp_path / "ckpt"))
    assert TrialLoop(trial, store.for_trial("off", 0), max_epochs=2, seed=1).context.background_checkpoints is False
    monkeypatch.delenv("INTERMISSION_BACKGROUND_CHECKPOINTS")
    assert TrialLoop(trial, store.for_trial("off", 0), max_epochs=2, seed=1).context.background_checkpoints is True


def test_a_study_stopped_at_once_waits_for_the_checkpoint_being_written(tmp_path, gate):
    store = CheckpointStore(str(tmp_path / "ckpt"))
    trial = _study(tmp_path, "stopped").ask()
    signal = PauseSignal()
    loop = TrialLoop(trial, store.for_trial("stopped", 0), max_epochs=6, seed=11, pause_signal=signal,
                     background_checkpoints=True)
    model = torch.nn.Linear(2, 1)
    epochs = loop.epochs(model)
    next(epochs)
    loop.end_epoch(1.0)  # its write is held at the gate
    _open_later(gate)
    signal.stop_recording(timeout=10)  # what a second Ctrl+C does before the process exits
    assert store.for_trial("stopped", 0).last_epoch() == 0


def test_the_next_copy_reuses_the_buffers_of_the_copy_already_written_and_sees_the_new_values(tmp_path):
    trial = _trial(tmp_path)
    weights = torch.zeros(1024)
    trial.save_in_background(0, {"w": weights})
    weights.add_(1.0)
    trial.save_in_background(1, {"w": weights})  # the copy of epoch 0 was written: its buffer is reused
    trial.wait()
    reader = _reader(trial)
    assert torch.equal(reader.load_latest_valid().state["w"], torch.ones(1024))
    assert reader.epochs() == [0, 1]
    assert torch.equal(torch.load(trial.path(0), weights_only=True)["w"], torch.zeros(1024))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_a_gpu_state_is_copied_into_cpu_memory():
    weights = torch.arange(16.0, device="cuda")
    copied = snapshot({"w": weights, "view": weights[8:]})
    weights.add_(1.0)
    assert copied["w"].device.type == "cpu" and torch.equal(copied["w"], torch.arange(16.0))
    assert torch.equal(copied["view"], torch.arange(8.0, 16.0))
