"""The trial loop: checkpoints restore training exactly, pauses and early stops."""

from __future__ import annotations

import random

import numpy as np
import optuna
import pytest
import torch

from prefect_intermission import CheckpointStore, PauseSignal, TrialLoop, TrialPaused
from prefect_intermission.training._rng import seed_everything
from prefect_intermission.errors import CheckpointError, IntermissionError
from tests.objectives import classifier
from tests.signals import PauseAfter

MAX_EPOCHS = 6


def _new_study(tmp_path, name: str) -> optuna.Study:
    return optuna.create_study(
        study_name=name,
        storage=f"sqlite:///{tmp_path}/{name}.db",
        sampler=optuna.samplers.RandomSampler(seed=3),
        pruner=optuna.pruners.NopPruner(),
    )


def _loop(trial, store, signal=None) -> TrialLoop:
    return TrialLoop(
        trial, store.for_trial(trial.study.study_name, trial.number),
        max_epochs=MAX_EPOCHS, seed=11, pause_signal=signal,
    )


def _final_weights(store, study_name) -> dict[str, torch.Tensor]:
    return store.for_trial(study_name, 0).load_latest_valid().state["components"]["model"]


def test_checkpoint_round_trip_resumes_bit_identically(tmp_path):
    store = CheckpointStore(str(tmp_path / "ckpt"))

    # Uninterrupted.
    reference = _new_study(tmp_path, "reference")
    trial = reference.ask()
    seed_everything(5)
    reference_value = classifier(trial, _loop(trial, store))
    reference_intermediate = reference._storage.get_trial(trial._trial_id).intermediate_values

    # Paused after epoch 2, then continued by fresh objects after the RNGs were disturbed.
    paused = _new_study(tmp_path, "paused")
    trial = paused.ask()
    seed_everything(5)
    with pytest.raises(TrialPaused) as stopped:
        classifier(trial, _loop(trial, store, PauseAfter(2)))
    assert stopped.value.epoch == 2
    random.random(), np.random.rand(), torch.rand(3)  # another process would differ
    seed_everything(5)
    resumed = optuna.Trial(paused, trial._trial_id)
    loop = _loop(resumed, store)
    resumed_value = classifier(resumed, loop)

    assert loop.resumed_from_epoch == 2
    assert resumed_value == reference_value
    assert paused._storage.get_trial(trial._trial_id).intermediate_values == reference_intermediate
    assert len(reference_intermediate) == MAX_EPOCHS
    assert loop.extra_state["losses"] == store.for_trial("reference", 0).load_latest_valid().state["extra_state"]["losses"]
    expected, actual = _final_weights(store, "reference"), _final_weights(store, "paused")
    assert expected.keys() == actual.keys()
    for name in expected:
        assert torch.equal(expected[name], actual[name]), name


def test_pause_is_not_raised_after_the_last_epoch(tmp_path):
    store = CheckpointStore(str(tmp_path / "ckpt"))
    study = _new_study(tmp_path, "s")
    trial = study.ask()
    signal = PauseSignal()
    signal.request("test")
    loop = _loop(trial, store, signal)
    loop.max_epochs = 1
    assert classifier(trial, loop) == loop.best_metric


def test_keeps_only_the_last_checkpoints(tmp_path):
    store = CheckpointStore(str(tmp_path / "ckpt"), keep_last=2)
    study = _new_study(tmp_path, "s")
    trial = study.ask()
    classifier(trial, _loop(trial, store))
    assert store.for_trial("s", 0).epochs() == [MAX_EPOCHS - 2, MAX_EPOCHS - 1]


def test_a_checkpoint_for_another_model_shape_is_refused(tmp_path):
    store = CheckpointStore(str(tmp_path / "ckpt"))
    study = _new_study(tmp_path, "s")
    trial = study.ask()
    with pytest.raises(TrialPaused):
        classifier(trial, _loop(trial, store, PauseAfter(1)))
    wrong_model = torch.nn.Linear(3, 3)
    optimizer = torch.optim.SGD(wrong_model.parameters(), lr=0.1, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2)
    loop = _loop(trial, store)
    with pytest.raises(CheckpointError, match="model of trial 0 does not match its checkpoint"):
        for _ in loop.epochs(wrong_model, optimizer, scheduler):
            pass


def test_forgetting_end_epoch_is_reported(tmp_path):
    store = CheckpointStore(str(tmp_path / "ckpt"))
    trial = _new_study(tmp_path, "s").ask()
    loop = _loop(trial, store)
    with pytest.raises(IntermissionError, match="end_epoch"):
        for _ in loop.epochs(torch.nn.Linear(2, 1)):
            pass


def test_early_stopping_counters_survive_a_pause(tmp_path):
    store = CheckpointStore(str(tmp_path / "ckpt"))
    trial = _new_study(tmp_path, "s").ask()
    metrics = iter([1.0, 0.5, 0.6, 0.7, 0.8, 0.9])
    model = torch.nn.Linear(2, 1)

    def run(signal=None) -> TrialLoop:
        loop = TrialLoop(trial, store.for_trial("s", 0), max_epochs=6, seed=0,
                         pause_signal=signal, patience=2)
        for _ in loop.epochs(model):
            loop.end_epoch(next(metrics))
        return loop

    with pytest.raises(TrialPaused):
        run(PauseAfter(2))  # pauses after epoch 2: one epoch without improvement
    loop = run()
    assert loop.epoch == 3  # stopped early after the second epoch without improvement
    assert loop.best_metric == 0.5
