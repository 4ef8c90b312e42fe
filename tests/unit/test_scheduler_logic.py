"""The scheduler's decisions, without a server: which trials start, how many at once, what a
pause, a held trial and failures do. Trials "train" in memory (`ScriptedExecutor`): each
attempt ends at once as its script says, recorded in a real Optuna study on SQLite."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from prefect_intermission.pausing.reasons import PauseReason
from prefect_intermission.study.attempt import TrialOutcome
from prefect_intermission.study.config import StudyConfig
from prefect_intermission.study.scheduler import TrialScheduler
from prefect_intermission.study.state import StudyState, open_storage
from prefect_intermission.training.pause_signal import PauseSignal
from prefect_intermission.training.store import CheckpointStore
from tests.unit.scripted import Script, ScriptedExecutor, completes


@pytest.fixture
def state(tmp_path) -> StudyState:
    storage = open_storage(f"sqlite:///{tmp_path}/s.db")
    study = optuna.create_study(study_name="s", storage=storage, sampler=optuna.samplers.RandomSampler(seed=0))
    return StudyState(study, engine=storage.engine, signing_key=b"k" * 32)


def _schedule(state, tmp_path, script: Script, signal: PauseSignal | None = None, **config):
    signal = signal if signal is not None else PauseSignal()
    executor = ScriptedExecutor(state, script, signal=signal)
    scheduler = TrialScheduler(
        state, executor, config=StudyConfig(study_name="s", objective="m:f", **config),
        checkpoints=CheckpointStore(str(tmp_path / "ckpt")), pause_signal=signal,
    )
    return scheduler.run(), executor


def test_it_trains_n_trials_never_more_at_once_than_allowed(state, tmp_path):
    result, executor = _schedule(state, tmp_path, completes, n_trials=5, max_concurrent_trials=2)
    assert result.finished == 5 and not result.paused and not result.failed
    assert executor.started == [0, 1, 2, 3, 4] and executor.most_at_once == 2
    assert [t.state for t in state.study.trials] == [TrialState.COMPLETE] * 5


def test_a_pause_starts_no_new_trial_and_the_next_run_continues_the_paused_ones_first(state, tmp_path):
    signal = PauseSignal()

    def paused_in_the_first_epoch(trial: optuna.Trial, attempt: int) -> TrialOutcome:
        signal.request(PauseReason.UI)  # asked while trials 0 and 1 train their first epoch
        return TrialOutcome(trial.number, "paused", epoch=0)

    result, executor = _schedule(state, tmp_path, paused_in_the_first_epoch, signal, n_trials=4, max_concurrent_trials=2)
    assert executor.started == [0, 1] and result.finished == 0
    assert result.paused == {0: 0, 1: 0}  # both running when the pause came; they pause after epoch 0

    result, executor = _schedule(state, tmp_path, completes, n_trials=4, max_concurrent_trials=2)
    assert executor.started == [0, 1, 2, 3], "the paused trials continue first, under their own numbers"
    assert result.finished == 4 and len(state.study.trials) == 4


def test_trials_that_fail_as_optuna_fails_them_are_replaced_until_max_failed_trials(state, tmp_path):
    def nan_for_odd(trial: optuna.Trial, attempt: int) -> TrialOutcome:
        if trial.number % 2:
            return TrialOutcome(trial.number, "failed", epoch=0, error="metric nan", study_goes_on=True)
        return completes(trial, attempt)

    result, executor = _schedule(state, tmp_path, nan_for_odd, n_trials=3, max_failed_trials=5)
    assert result.finished == 3 and [o.number for o in result.failed_trials] == [1, 3]
    assert executor.started == [0, 1, 2, 3, 4] and not result.failed

    signal = PauseSignal()
    result, _ = _schedule(state, tmp_path, nan_for_odd, signal, n_trials=10, max_failed_trials=2)
    assert len(result.failed) == 1 and "max_failed_trials=2" in result.failed[0].error
    assert signal.reason == PauseReason.TRIAL_FAILED  # the objective looks broken: the study stops


def test_when_only_held_trials_are_left_the_study_pauses_for_them(state, tmp_path):
    signal = PauseSignal()
    signal.set_held({0})

    def held_pauses(trial: optuna.Trial, attempt: int) -> TrialOutcome:
        if trial.number in signal.held:  # `intermission pause RUN --trial 0`
            return TrialOutcome(trial.number, "paused", epoch=1)
        return completes(trial, attempt)

    result, executor = _schedule(state, tmp_path, held_pauses, signal, n_trials=3, max_concurrent_trials=1)
    assert executor.started == [0, 1, 2]  # trial 0 waits aside while 1 and 2 train
    assert result.finished == 2 and result.paused == {0: 1}
    assert signal.reason == PauseReason.TRIAL
