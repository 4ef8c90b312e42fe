"""Training trials as Prefect tasks of the study's own flow run, a few at a time on its threads."""

from __future__ import annotations

import logging
import queue

import optuna
from optuna.trial import TrialState
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.exceptions import Pause
from prefect.states import State

from prefect_intermission._optuna_internals import storage_of, trial_id_of
from prefect_intermission.pausing.reasons import PauseReason
from prefect_intermission.pausing.run_states import (
    paused_trial_state,
    stopped_trial_state,
)
from prefect_intermission.reporting.progress import StudyProgress
from prefect_intermission.study.attempt import (
    AttemptSettings,
    Objective,
    TrialOutcome,
    run_trial_attempt,
)
from prefect_intermission.study.config import StudyConfig
from prefect_intermission.study.executors.base import TrialExecutor
from prefect_intermission.study.state import StudyState
from prefect_intermission.training.pause_signal import PauseSignal
from prefect_intermission.training.store import CheckpointStore

logger = logging.getLogger(__name__)

_FINISHED_STATES = {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned"}


class _Attempt:
    """One trial attempt, run inside the task; keeps its outcome for the executor.

    The outcome is not passed back as the task's result: once the flow run is
    suspended, Prefect raises `Pause` instead of returning results.
    """

    def __init__(self, executor: TaskExecutor, trial: optuna.Trial) -> None:
        self.executor = executor
        self.trial = trial
        self.outcome: TrialOutcome | None = None
        self.error: BaseException | None = None  # raised outside the objective (e.g. storage)

    def __call__(self) -> None:
        ex = self.executor
        try:
            self.outcome = run_trial_attempt(
                ex.state, self.trial, ex.objective, checkpoints=ex.checkpoints,
                pause_signal=ex.pause_signal, progress=ex.progress, settings=ex.settings,
            )
        except BaseException as e:
            self.error = e
            raise


@task(name="train-trial", task_run_name="trial-{trial_number}", cache_policy=NO_CACHE, persist_result=False)
def train_trial(trial_number: int, attempt: _Attempt) -> State | None:
    """Train one trial until it finishes or pauses (a Prefect task per trial).

    A trial that paused ends its task run "Paused" (not a green Completed), saying
    after how many epochs and where its checkpoint is.
    """
    attempt()
    outcome = attempt.outcome
    if outcome is not None and outcome.state == "paused":
        if outcome.stopping:
            return stopped_trial_state(outcome.message or f"Trial {trial_number} stopped by Stop & Save.")
        return paused_trial_state(outcome.message or f"Trial {trial_number} paused.")
    return None


class TaskExecutor(TrialExecutor):
    """Trains each trial attempt as a task of this flow run (`max_concurrent_trials` threads)."""

    trains_here = True

    def __init__(
        self,
        state: StudyState,
        objective: Objective,
        *,
        checkpoints: CheckpointStore,
        config: StudyConfig,
        pause_signal: PauseSignal,
        progress: StudyProgress | None = None,
    ) -> None:
        self.state = state
        self.objective = objective
        self.checkpoints = checkpoints
        self.config = config
        self.settings = AttemptSettings.of(config)
        self.pause_signal = pause_signal
        self.progress = progress
        self._active: dict[int, _Attempt] = {}
        self._done: queue.Queue[int] = queue.Queue()

    def start(self, trial: optuna.Trial) -> None:
        number = trial.number
        attempt = self._active[number] = _Attempt(self, trial)
        try:
            future = train_trial.submit(number, attempt)
        except Pause:  # Prefect saw the suspension before our watcher did
            self.pause_signal.request(PauseReason.UI)
            self._done.put(number)
            return
        future.add_done_callback(lambda _: self._done.put(number))

    def running(self) -> list[int]:
        return sorted(self._active)

    def wait(self, timeout: float) -> list[TrialOutcome]:
        try:
            number = self._done.get(timeout=timeout)
        except queue.Empty:
            return []
        attempt = self._active.pop(number)
        return [attempt.outcome if attempt.outcome is not None else self._unfinished(attempt)]

    def stop_now(self) -> dict[int, int | None]:
        """Mark the trials being trained paused at their last checkpoint, without waiting.

        Their epoch in progress is lost: the next run trains it again.
        """
        stopped = {}
        for number, attempt in list(self._active.items()):
            last = self._last_epoch(number)
            try:
                self.state.mark_paused(trial_id_of(attempt.trial), last)
            except optuna.exceptions.UpdateFinishedTrialError:
                continue  # it finished meanwhile
            stopped[number] = last
        return stopped

    def _unfinished(self, attempt: _Attempt) -> TrialOutcome:
        """An attempt with no outcome: Prefect refused to start its task because the run
        was already suspended, or something outside the objective (the study's storage)
        raised. Either way the study pauses and the trial continues from its last
        checkpoint, unless Optuna already recorded it finished."""
        number, trial_id = attempt.trial.number, trial_id_of(attempt.trial)
        if attempt.error is None:
            self.pause_signal.request(PauseReason.UI)
        else:
            logger.error(
                "Trial %d stopped outside its objective (%s: %s). Pausing the study; a resume "
                "continues the trial from its last checkpoint.",
                number, type(attempt.error).__name__, attempt.error, exc_info=attempt.error,
            )
            self.pause_signal.request(PauseReason.TRIAL_ERROR)
        last = self._last_epoch(number)
        try:
            self.state.mark_paused(trial_id, last)
        except optuna.exceptions.UpdateFinishedTrialError:
            frozen = storage_of(self.state.study).get_trial(trial_id)
            if frozen.state in _FINISHED_STATES:
                return TrialOutcome(number, _FINISHED_STATES[frozen.state], value=frozen.value, epoch=last)
            return TrialOutcome(number, "failed", epoch=last, error=f"{type(attempt.error).__name__}: {attempt.error}")
        return TrialOutcome(number, "paused", epoch=last)

    def _last_epoch(self, number: int) -> int | None:
        return self.checkpoints.for_trial(self.state.study.study_name, number).last_epoch()
