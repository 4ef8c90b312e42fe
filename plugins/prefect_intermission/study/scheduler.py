"""Running a study's trials as Prefect tasks, a few at a time, until done or paused.

Unfinished trials (paused, or cut off by a crash) are continued first, under their
own numbers; new trials are asked
only while fewer than `n_trials` are finished or under way. Once a pause is
requested no trial is started, and the scheduler waits for the running ones to
reach their epoch boundary.
"""

from __future__ import annotations

import logging
import queue
from collections import deque
from dataclasses import dataclass, field
from typing import Literal
from uuid import UUID

import optuna
from optuna.trial import TrialState
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.exceptions import Pause

from prefect_intermission.training.checkpoints import CheckpointStore
from prefect_intermission.errors import CheckpointError
from prefect_intermission.reporting.events import emit_trial_event
from prefect_intermission.pausing.signal import PauseSignal
from prefect_intermission.reporting.progress import StudyProgress
from prefect_intermission.study.state import TRIAL_PAUSED_EPOCH_ATTR, StudyState
from prefect_intermission.study.attempt import Objective, TrialOutcome, reattach_trial, run_trial_attempt

logger = logging.getLogger(__name__)

#: How often the scheduler looks for held trials that were released, while trials train.
_RELEASE_CHECK_SECONDS = 0.5


@dataclass(frozen=True)
class StudySettings:
    """What the scheduler needs to know about the search."""

    n_trials: int
    max_epochs: int
    seed: int
    max_concurrent_trials: int
    direction: Literal["minimize", "maximize"]


@dataclass
class ScheduleResult:
    """How a scheduling pass ended."""

    finished: int
    paused: dict[int, int | None] = field(default_factory=dict)
    failed: list[TrialOutcome] = field(default_factory=list)


_PROGRESS_STATES = {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned"}


class _Attempt:
    """One trial attempt, run inside the task; keeps its outcome for the scheduler.

    The outcome is not passed back as the task's result: once the flow run is
    suspended, Prefect raises `Pause` instead of returning results.
    """

    def __init__(self, run: TrialScheduler, trial: optuna.Trial) -> None:
        self.run = run
        self.trial = trial
        self.outcome: TrialOutcome | None = None
        self.error: BaseException | None = None  # raised outside the objective (e.g. storage)

    def __call__(self) -> None:
        run = self.run
        try:
            self.outcome = run_trial_attempt(
                run.state,
                self.trial,
                run.objective,
                checkpoints=run.checkpoints,
                max_epochs=run.settings.max_epochs,
                study_seed=run.settings.seed,
                pause_signal=run.pause_signal,
                direction=run.settings.direction,
                progress=run.progress,
            )
        except BaseException as e:
            self.error = e
            raise


@task(name="train-trial", task_run_name="trial-{trial_number}", cache_policy=NO_CACHE, persist_result=False)
def train_trial(trial_number: int, attempt: _Attempt) -> None:
    """Train one trial until it finishes or pauses (a Prefect task per trial)."""
    attempt()



class TrialScheduler:
    """Runs the trials of one study in this flow run."""

    #: Whether `stop_now` stops the trials being trained (they run in this process).
    stops_trials_at_once = True

    def __init__(
        self,
        state: StudyState,
        objective: Objective,
        *,
        checkpoints: CheckpointStore,
        settings: StudySettings,
        pause_signal: PauseSignal,
        progress: StudyProgress | None = None,
        flow_run_id: UUID | None = None,
    ) -> None:
        self.state = state
        self.flow_run_id = flow_run_id
        self.progress = progress
        self.objective = objective
        self.checkpoints = checkpoints
        self.settings = settings
        self.pause_signal = pause_signal
        self._active: dict[int, _Attempt] = {}
        self._held: dict[int, tuple[int, int | None]] = {}  # number -> (trial id, epoch it paused after)
        self._result = ScheduleResult(finished=0)

    def check_checkpoints(self, *, restart_missing: bool) -> None:
        """Fail before any work if unfinished trials' checkpoints are gone or of another format.

        A trial paused after an epoch, or cut off after two or more epochs, must have
        checkpoints; if its folder is gone (deleted, or `checkpoints` points elsewhere)
        continuing it would silently retrain it. With `restart_missing` it is retrained.
        """
        missing = []
        for trial in self.state.unfinished_trials():
            paused_epoch = trial.system_attrs.get(TRIAL_PAUSED_EPOCH_ATTR)
            had_checkpoint = paused_epoch is not None or len(trial.intermediate_values) >= 2
            stored = self.checkpoints.for_trial(self.state.study.study_name, trial.number)
            stored.check_format()
            if had_checkpoint and not stored.exists():
                missing.append(f"#{trial.number} ({len(trial.intermediate_values)} epochs trained)")
        if missing and not restart_missing:
            raise CheckpointError(
                f"The checkpoints of trial(s) {', '.join(missing)} of study "
                f"{self.state.study.study_name!r} are missing from "
                f"{self.checkpoints.study_folder(self.state.study.study_name)!r}: they were "
                "deleted, or `checkpoints` points elsewhere than when they were written. "
                "Nothing was changed. Point `checkpoints` at the right location, or run again "
                "with restart_trials_without_checkpoints=True to train those trials again from "
                "the start with the same parameters."
            )

    def run(self) -> ScheduleResult:
        """Train until `n_trials` are finished, a pause stops the study, or a trial fails.

        A held trial (paused on its own) waits aside and continues once its hold is
        released. When only held trials are left, the study pauses (reason `"trial"`)
        to free the machine; they continue when it resumes.
        """
        result = self._result = ScheduleResult(finished=self.state.finished_count())
        active = self._active
        held = self._held
        held.clear()  # rebuilt below from the stored trials: a hold lifted meanwhile must not queue twice
        to_continue: deque[int] = deque()
        for trial in self.state.unfinished_trials():
            if trial.number in self.pause_signal.held:  # still held from before a pause
                held[trial.number] = (trial._trial_id, trial.system_attrs.get(TRIAL_PAUSED_EPOCH_ATTR))
            else:
                to_continue.append(trial._trial_id)
        done: queue.Queue[int] = queue.Queue()
        while True:
            for number in [n for n in held if n not in self.pause_signal.held]:
                logger.info("Trial %d was released: continuing it.", number)
                to_continue.append(held.pop(number)[0])
            while self._may_start(result, len(active), len(held), len(to_continue)):
                if to_continue:
                    trial = reattach_trial(self.state, to_continue.popleft())
                    if self.flow_run_id is not None:
                        emit_trial_event("resumed", self.state.study.study_name, self.flow_run_id, trial.number)
                else:
                    trial = self._ask()
                attempt = _Attempt(self, trial)
                active[trial.number] = attempt
                if not self._submit(attempt, done):
                    break
            if not active:
                if held and not self.pause_signal.is_requested():
                    logger.info("Only held trials are left: pausing the study until they are released.")
                    self.pause_signal.request("trial")
                result.paused.update({number: epoch for number, (_, epoch) in held.items()})
                return result
            try:
                number = done.get(timeout=_RELEASE_CHECK_SECONDS)
            except queue.Empty:
                continue
            attempt = active.pop(number)
            self._collect(attempt, result)
            if number in result.paused and not self.pause_signal.is_requested():
                held[number] = (attempt.trial._trial_id, result.paused.pop(number))

    def stop_now(self) -> dict[int, int | None]:
        """Mark the trials being trained paused at their last checkpoint, without waiting.

        Their epoch in progress is lost: the next run trains it again. Returns every
        paused trial, those marked now, those held and those that paused already, with the
        epoch each continues after (None: from the start).
        """
        study_name = self.state.study.study_name
        stopped = {number: epoch for number, (_, epoch) in self._held.items()}
        stopped.update(self._result.paused)
        for number, attempt in list(self._active.items()):
            last = self.checkpoints.for_trial(study_name, number).last_epoch()
            try:
                self.state.mark_paused(attempt.trial._trial_id, last)
            except optuna.exceptions.UpdateFinishedTrialError:
                continue  # it finished meanwhile
            stopped[number] = last
        return stopped

    def _collect_unfinished(self, attempt: _Attempt, result: ScheduleResult) -> None:
        """An attempt with no outcome: Prefect refused to start its task because the run
        was already suspended, or something outside the objective (the study's storage)
        raised. Either way the study pauses and the trial continues from its last
        checkpoint, unless Optuna already recorded it finished."""
        number, trial_id = attempt.trial.number, attempt.trial._trial_id
        if attempt.error is None:
            self.pause_signal.request("ui")
        else:
            logger.error(
                "Trial %d stopped outside its objective (%s: %s). Pausing the study; a resume "
                "continues the trial from its last checkpoint.",
                number, type(attempt.error).__name__, attempt.error, exc_info=attempt.error,
            )
            self.pause_signal.request("trial-error")
        last = self.checkpoints.for_trial(self.state.study.study_name, number).last_epoch()
        try:
            self.state.mark_paused(trial_id, last)
        except optuna.exceptions.UpdateFinishedTrialError:
            state = self.state.study._storage.get_trial(trial_id).state
            if state in (TrialState.COMPLETE, TrialState.PRUNED):
                result.finished += 1
            if self.progress is not None:
                self.progress.trial_ended(number, _PROGRESS_STATES.get(state, "failed"))
            return
        result.paused[number] = last
        if self.progress is not None:
            self.progress.trial_ended(number, "paused")

    def _may_start(self, result: ScheduleResult, n_active: int, n_held: int, n_waiting: int) -> bool:
        if self.pause_signal.is_requested() or result.failed:
            return False
        if n_active >= self.settings.max_concurrent_trials:
            return False
        return n_waiting > 0 or result.finished + n_active + n_held < self.settings.n_trials

    def _ask(self) -> optuna.Trial:
        with self.state.sampler_lock:
            trial = self.state.study.ask()
            self.state.save_sampler()
        return trial

    def _submit(self, attempt: _Attempt, done: queue.Queue[int]) -> bool:
        number = attempt.trial.number
        try:
            future = train_trial.submit(number, attempt)
        except Pause:
            # Prefect saw the suspension before our watcher did.
            self.pause_signal.request("ui")
            done.put(number)
            return False
        future.add_done_callback(lambda _: done.put(number))
        return True

    def _collect(self, attempt: _Attempt, result: ScheduleResult) -> None:
        outcome = attempt.outcome
        number = attempt.trial.number
        if outcome is not None and self.progress is not None:
            self.progress.trial_ended(number, outcome.state)
        if outcome is not None and self.flow_run_id is not None:
            emit_trial_event(
                outcome.state, self.state.study.study_name, self.flow_run_id, number,
                {"epoch": outcome.epoch, "value": outcome.value},
            )
        if outcome is None:
            self._collect_unfinished(attempt, result)
            return
        if outcome.state in ("complete", "pruned"):
            result.finished += 1
            logger.info(
                "Trial %d %s after epoch %d: %s (%d/%d finished).",
                number, outcome.state, outcome.epoch, outcome.value,
                result.finished, self.settings.n_trials,
            )
        elif outcome.state == "paused":
            result.paused[number] = outcome.epoch
        else:
            result.failed.append(outcome)
            if outcome.kept:
                result.paused[number] = outcome.epoch
            self.pause_signal.request("trial-failed")
