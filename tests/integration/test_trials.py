"""Trial attempts and the stored sampler: a continued search suggests what an uninterrupted one would."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import optuna
import pytest
from prefect_intermission import CheckpointStore, PauseSignal
from prefect_intermission.study.attempt import AttemptSettings, run_trial_attempt, trial_seed
from prefect_intermission.training.trial_settings import TrainingSettings
from prefect_intermission.study.resuming import reattach_trial
from prefect_intermission.study.setup import load_study_state
from prefect_intermission.study.state import TRIAL_PAUSED_EPOCH_ATTR

from tests.objectives import classifier

pytestmark = pytest.mark.usefixtures("prefect_server")  # the signing key is a Secret block

N_TRIALS = 14  # past TPE's 10 startup trials, so relative sampling is in play


def _suggest(trial: optuna.Trial) -> None:
    trial.suggest_float("x", -5, 5)
    trial.suggest_int("n", 1, 8)


def _value(trial: optuna.Trial) -> float:
    return (trial.params["x"] - 1) ** 2 + trial.params["n"]


def _state(tmp_path, name):
    return load_study_state(
        name, f"sqlite:///{tmp_path}/s.db", seed=42, direction="minimize", sampler="tpe", pruner="none"
    )


def test_a_search_continued_from_storage_suggests_the_same_sequence(tmp_path):
    reference = _state(tmp_path, "reference").study
    for _ in range(N_TRIALS):
        trial = reference.ask()
        _suggest(trial)
        reference.tell(trial, _value(trial))

    first = _state(tmp_path, "paused")
    for number in range(N_TRIALS):
        trial = first.study.ask()
        _suggest(trial)
        if number == 12:  # the process stops with trial 12 running
            first.save_sampler()
            break
        first.study.tell(trial, _value(trial))

    second = _state(tmp_path, "paused")  # a new process: everything from storage
    again = reattach_trial(second, trial._trial_id)
    _suggest(again)
    assert again.params == trial.params
    second.study.tell(again.number, _value(again))
    trial = second.study.ask()
    _suggest(trial)
    second.study.tell(trial, _value(trial))

    assert [t.params for t in second.study.trials] == [t.params for t in reference.trials]


def test_an_attempt_records_a_pause_and_the_next_one_finishes(tmp_path):
    state = _state(tmp_path, "s")
    store = CheckpointStore(str(tmp_path / "ckpt"))
    signal = PauseSignal()
    signal.request("test")
    trial = state.study.ask()
    kwargs = dict(checkpoints=store, settings=AttemptSettings(TrainingSettings(max_epochs=4), study_seed=3))

    paused = run_trial_attempt(state, trial, classifier, pause_signal=signal, **kwargs)
    assert (paused.state, paused.epoch) == ("paused", 0)
    assert [t.number for t in state.paused_trials()] == [0]
    assert state.paused_trials()[0].system_attrs[TRIAL_PAUSED_EPOCH_ATTR] == 0

    done = run_trial_attempt(
        state, reattach_trial(state, trial._trial_id), classifier, pause_signal=PauseSignal(), **kwargs
    )
    assert done.state == "complete"
    assert state.paused_trials() == []
    assert state.finished_count() == 1
    assert len(state.study.trials[0].intermediate_values) == 4


def test_an_objective_that_raises_fails_its_trial_with_the_reason(tmp_path):
    state = _state(tmp_path, "s")

    def broken(trial, loop):
        raise ZeroDivisionError("division by zero")

    outcome = run_trial_attempt(
        state, state.study.ask(), broken, checkpoints=CheckpointStore(str(tmp_path / "c")),
        settings=AttemptSettings(TrainingSettings(max_epochs=2), study_seed=0), pause_signal=PauseSignal(),
    )
    assert outcome.state == "failed"
    assert outcome.error == "ZeroDivisionError: division by zero"
    assert state.study.trials[0].state == optuna.trial.TrialState.FAIL


@pytest.mark.parametrize("number", [0, 1, 99])
def test_trial_seeds_differ_by_trial_and_repeat_by_study_seed(number):
    assert trial_seed(7, number) == trial_seed(7, number)
    assert trial_seed(7, number) != trial_seed(8, number)
    assert trial_seed(7, number) != trial_seed(7, number + 1)


def test_epoch_times_exclude_the_pause_and_survive_it(tmp_path):
    state = _state(tmp_path, "timed")
    store = CheckpointStore(str(tmp_path / "ckpt"))
    signal = PauseSignal()
    signal.request("test")
    trial = state.study.ask()
    kwargs = dict(checkpoints=store, settings=AttemptSettings(TrainingSettings(max_epochs=3), study_seed=3))
    run_trial_attempt(state, trial, classifier, pause_signal=signal, **kwargs)
    first = state.study.trials[0].system_attrs["intermission:epoch_seconds"]
    assert len(first) == 1
    import time

    time.sleep(1.0)  # paused: not training time
    resumed = time.perf_counter()
    run_trial_attempt(state, reattach_trial(state, trial._trial_id), classifier, pause_signal=PauseSignal(), **kwargs)
    resumed_for = time.perf_counter() - resumed
    seconds = state.study.trials[0].system_attrs["intermission:epoch_seconds"]
    assert len(seconds) == 3 and seconds[0] == first[0] and all(s > 0 for s in seconds)
    # The epochs after the pause were all trained by the resumed attempt: none counts the pause.
    assert sum(seconds[1:]) <= resumed_for


def test_a_continued_trial_trains_while_another_process_holds_the_sampler(tmp_path):
    state = _state(tmp_path, "s")
    kwargs = dict(
        checkpoints=CheckpointStore(str(tmp_path / "ckpt")), settings=AttemptSettings(TrainingSettings(max_epochs=4), study_seed=3),
        hold_sampler_while_suggesting=True,
    )
    pausing = PauseSignal()
    pausing.request("test")
    trial = state.study.ask()
    assert run_trial_attempt(state, trial, classifier, pause_signal=pausing, **kwargs).state == "paused"

    sampling, release = threading.Event(), threading.Event()

    def another_trial_sampling() -> None:
        with state.sampler_lock:
            sampling.set()
            release.wait(120)

    holder = threading.Thread(target=another_trial_sampling)
    holder.start()
    sampling.wait()
    pool = ThreadPoolExecutor(1)
    try:
        continued = pool.submit(
            run_trial_attempt, state, reattach_trial(state, trial._trial_id), classifier,
            pause_signal=PauseSignal(), **kwargs,
        )
        # Every epoch is trained while the sampler is held elsewhere; only telling Optuna waits.
        deadline = time.monotonic() + 60
        while len(state.study._storage.get_trial(trial._trial_id).intermediate_values) < 4:
            assert time.monotonic() < deadline, "the continued trial waited for the sampler to train"
            assert not continued.done(), continued.result()
            time.sleep(0.1)
        assert not continued.done(), "it told Optuna without the sampler"
    finally:
        release.set()
        holder.join()
        pool.shutdown(wait=True)
    assert continued.result().state == "complete"


_held: dict[str, object] = {}


def _paused_mid_epoch_with_workers(trial: optuna.Trial, loop) -> float:
    """A model trained from a loader with persistent data-loading workers; the first step pauses."""
    import multiprocessing
    import weakref

    import torch
    from torch import nn
    from torch.utils.data import TensorDataset

    model = nn.Linear(8, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    data = TensorDataset(torch.randn(64, 8), torch.randn(64, 1))
    loader = loop.data_loader(data, batch_size=8, shuffle=True, num_workers=2, persistent_workers=True)
    _held.update(model=weakref.ref(model), optimizer=weakref.ref(optimizer), loader=weakref.ref(loader))
    for _epoch in loop.epochs(model, optimizer):
        for x, y in loader:
            _held["workers"] = multiprocessing.active_children()
            optimizer.zero_grad()
            nn.functional.mse_loss(model(x), y).backward()
            optimizer.step()
            loop.step()
        loop.end_epoch(0.0)
    return 0.0


def _import_what_it_uses(objective, tmp_path) -> None:
    """Run `objective` once, unmeasured: the first run imports modules, and an exception an
    import keeps (with its traceback's frames) would keep the objective's locals alive."""
    state = _state(tmp_path, "warm-up")
    run_trial_attempt(
        state, state.study.ask(), objective, checkpoints=CheckpointStore(str(tmp_path / "warm-up")),
        settings=AttemptSettings(TrainingSettings(max_epochs=1), study_seed=0), pause_signal=PauseSignal(),
    )


def test_a_paused_trial_lets_go_of_its_model_optimizer_and_loader_workers(tmp_path):
    import gc

    _import_what_it_uses(_paused_mid_epoch_with_workers, tmp_path)
    state = _state(tmp_path, "s")
    signal = PauseSignal()
    signal.request("test")
    kwargs = dict(
        checkpoints=CheckpointStore(str(tmp_path / "ckpt")),
        settings=AttemptSettings(TrainingSettings(max_epochs=2, pause_granularity="step"), study_seed=3),
    )
    gc.disable()  # only what the pause itself lets go of counts, not a collection that happens to run
    try:
        paused = run_trial_attempt(
            state, state.study.ask(), _paused_mid_epoch_with_workers, pause_signal=signal, **kwargs,
        )
        assert (paused.state, paused.epoch) == ("paused", -1)
        assert [name for name in ("model", "optimizer", "loader") if _held[name]() is not None] == []
        workers = _held["workers"]
        assert len(workers) == 2 and not any(w.is_alive() for w in workers)
    finally:
        gc.enable()


def _trained_to_the_end(trial: optuna.Trial, loop) -> float:
    """A few epochs with a checkpoint each (written in the background), then the trial's value."""
    import weakref

    import torch
    from torch import nn

    model = nn.Linear(64, 64)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    _held.update(model=weakref.ref(model), optimizer=weakref.ref(optimizer), loop=weakref.ref(loop))
    for _epoch in loop.epochs(model, optimizer):
        optimizer.zero_grad()
        model(torch.randn(8, 64)).square().mean().backward()
        optimizer.step()
        loop.end_epoch(float(model.weight.detach().sum()))
    return loop.last_metric


def test_a_finished_trial_lets_go_of_its_model_and_checkpoint_copies_at_once(tmp_path):
    """A long study's memory stays flat: each trial's model, optimizer and background-copy
    buffers are freed when it ends, not at some later full garbage collection."""
    import gc

    _import_what_it_uses(_trained_to_the_end, tmp_path)
    state = _state(tmp_path, "s")
    kwargs = dict(checkpoints=CheckpointStore(str(tmp_path / "ckpt")), settings=AttemptSettings(TrainingSettings(max_epochs=3), study_seed=3))
    gc.disable()  # only what the attempt itself lets go of counts, not a collection that happens to run
    try:
        done = run_trial_attempt(state, state.study.ask(), _trained_to_the_end, pause_signal=PauseSignal(), **kwargs)
        assert done.state == "complete"
        assert [name for name in ("model", "optimizer", "loop") if _held[name]() is not None] == []
    finally:
        gc.enable()
