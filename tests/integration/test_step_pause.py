"""A pause within an epoch: the trial stops at its next step with the data position stored,
and continues with the next batch as if it had never stopped."""

from __future__ import annotations

import pytest
import torch
from prefect_intermission import PauseSignal
from prefect_intermission.study.attempt import AttemptSettings, run_trial_attempt
from prefect_intermission.training.trial_settings import TrainingSettings
from prefect_intermission.study.resuming import reattach_trial
from prefect_intermission.study.setup import load_study_state
from prefect_intermission.study.state import (
    TRIAL_PAUSED_EPOCH_ATTR,
    TRIAL_PAUSED_STEPS_ATTR,
)
from prefect_intermission.training.store import CheckpointStore

from tests.objectives import classifier, stepped_classifier

pytestmark = pytest.mark.usefixtures("prefect_server")  # the study's signing key is a Secret block

MAX_EPOCHS = 3  # 8 batches an epoch


class PauseOnAsk(PauseSignal):
    """Asks for a pause the `n`-th time the trial asks (it asks at every step and epoch end)."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n, self.asked = n, 0

    def pauses(self, trial_number: int) -> bool:
        self.asked += 1
        return self.asked >= self.n


def _study(tmp_path, name):
    state = load_study_state(name, f"sqlite:///{tmp_path}/s.db", seed=3, sampler="random", pruner="none")
    return state, CheckpointStore(str(tmp_path / name))


def _attempt(state, store, trial, signal, workers, **options):
    return run_trial_attempt(
        state, trial, stepped_classifier, checkpoints=store, pause_signal=signal,
        settings=AttemptSettings(
            TrainingSettings(max_epochs=MAX_EPOCHS, objective_params={"workers": workers}, **options), study_seed=3
        ),
    )


def _weights(store, name):
    return store.for_trial(name, 0).load_latest_valid().state["components"]["model"]


@pytest.mark.parametrize("workers", [0, 2])
def test_a_trial_paused_within_an_epoch_continues_with_the_next_batch_bit_identically(tmp_path, workers):
    reference, reference_store = _study(tmp_path, "reference")
    assert _attempt(reference, reference_store, reference.study.ask(), PauseSignal(), workers).state == "complete"

    state, store = _study(tmp_path, "paused")
    trial = state.study.ask()
    paused = _attempt(state, store, trial, PauseOnAsk(11), workers, pause_granularity="step")
    assert paused.state == "paused"
    # 8 steps and the end of epoch 1, then 2 steps of epoch 2.
    assert "1 of 3 epochs done, and 2 steps into epoch 2" in paused.message and "epoch-00001-mid.pt" in paused.message
    attrs = state.study.trials[0].system_attrs
    assert (attrs[TRIAL_PAUSED_EPOCH_ATTR], attrs[TRIAL_PAUSED_STEPS_ATTR]) == (0, 2)
    assert list(state.study.trials[0].intermediate_values) == [0]  # Optuna saw one report per epoch

    done = _attempt(state, store, reattach_trial(state, trial._trial_id), PauseSignal(), workers,
                    pause_granularity="step")
    assert done.state == "complete"
    mine, theirs = state.study.trials[0], reference.study.trials[0]
    assert (mine.params, mine.intermediate_values, mine.value) == (theirs.params, theirs.intermediate_values, theirs.value)
    a, b = _weights(store, "paused"), _weights(reference_store, "reference")
    assert all(torch.equal(a[k], b[k]) for k in b)


def test_step_checkpoints_keep_a_crashed_trial_within_one_interval(tmp_path):
    state, store = _study(tmp_path, "crashy")
    trial = state.study.ask()

    class Crash(Exception):
        pass

    def crashes_at_step_13(trial, loop):
        original = loop.step

        def step(n=1):
            original(n)
            if loop.global_step == 13:
                raise KeyboardInterrupt  # as a SIGKILL would, nothing recorded after this
        loop.step = step
        return stepped_classifier(trial, loop)

    with pytest.raises(KeyboardInterrupt):
        run_trial_attempt(
            state, trial, crashes_at_step_13, checkpoints=store, pause_signal=PauseSignal(),
            settings=AttemptSettings(TrainingSettings(max_epochs=MAX_EPOCHS, checkpoint_every_steps=4), study_seed=3),
        )
    latest = store.for_trial("crashy", 0).load_latest_valid().state
    assert (latest["epoch"], latest["global_step"], latest["within_epoch"]["steps"]) == (0, 12, 4)


def test_a_step_pause_without_a_known_data_position_is_refused_with_the_fix(tmp_path):
    state, store = _study(tmp_path, "plain")
    outcome = run_trial_attempt(
        state, state.study.ask(), classifier, checkpoints=store, pause_signal=PauseOnAsk(2),
        settings=AttemptSettings(TrainingSettings(max_epochs=MAX_EPOCHS, pause_granularity="step"), study_seed=3),
    )
    assert outcome.state == "failed"
    assert "cannot checkpoint within an epoch: the data position is unknown" in outcome.error
    assert "loop.data_loader(dataset, ...)" in outcome.error
