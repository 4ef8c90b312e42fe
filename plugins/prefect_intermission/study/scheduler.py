"""Running a study's trials, a few at a time, until done or paused.

Unfinished trials (paused, or cut off by a crash) are continued first, under their
own numbers; new trials are asked only while fewer than `n_trials` are finished or
under way. Once a pause is requested no trial is started, and the scheduler waits
for the running ones to reach their boundary. A trial that fails as Optuna fails one
(NaN, an exception in `catch`, out of GPU memory) is replaced by a new one, until
`max_failed_trials` have failed in this execution; once `timeout` is spent no new
trial starts. Where trials train is its executor's.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field, replace
from uuid import UUID

from prefect_intermission._counting import epochs_done
from prefect_intermission._optuna_internals import trial_id_of
from prefect_intermission.pausing.reasons import PauseReason
from prefect_intermission.reporting.events import emit_trial_event
from prefect_intermission.reporting.progress import StudyProgress
from prefect_intermission.study.attempt import TrialOutcome
from prefect_intermission.study.clock import TrainingClock
from prefect_intermission.study.config import StudyConfig
from prefect_intermission.study.executors.base import TrialExecutor
from prefect_intermission.study.resuming import reattach_trial
from prefect_intermission.study.state import TRIAL_PAUSED_EPOCH_ATTR, StudyState
from prefect_intermission.training.pause_signal import PauseSignal
from prefect_intermission.training.store import CheckpointStore

logger = logging.getLogger(__name__)

#: How long the scheduler waits for an outcome before it looks for released holds again.
_WAIT_SECONDS = 0.5


@dataclass
class ScheduleResult:
    """How a scheduling pass ended."""

    finished: int
    paused: dict[int, int | None] = field(default_factory=dict)
    failed: list[TrialOutcome] = field(default_factory=list)  # failures that stop the study
    failed_trials: list[TrialOutcome] = field(default_factory=list)  # failures it went on after
    timed_out: bool = False  # `timeout` spent before `n_trials` finished
    stopped: bool = False  # ended early by Stop & Save


class TrialScheduler:
    """Decides which trials of one study train, and counts how each attempt ended."""

    def __init__(
        self,
        state: StudyState,
        executor: TrialExecutor,
        *,
        config: StudyConfig,
        checkpoints: CheckpointStore,
        pause_signal: PauseSignal,
        progress: StudyProgress | None = None,
        flow_run_id: UUID | None = None,
        clock: TrainingClock | None = None,
    ) -> None:
        self.state = state
        self.executor = executor
        self.config = config
        self.checkpoints = checkpoints
        self.pause_signal = pause_signal
        self.progress = progress
        self.flow_run_id = flow_run_id
        self.clock = clock if clock is not None else TrainingClock(state, timeout=config.budget.timeout)
        self._trial_ids: dict[int, int] = {}
        self._held: dict[int, int | None] = {}  # number -> epoch it paused after
        self._result = ScheduleResult(finished=0)

    def run(self) -> ScheduleResult:
        """Train until `n_trials` are finished, a pause stops the study, or a trial fails.

        A held trial (paused on its own) waits aside and continues once its hold is
        released. When only held trials are left, the study pauses (reason `"trial"`)
        to free the machine; they continue when it resumes.
        """
        result = self._result = ScheduleResult(finished=self.state.finished_count())
        held = self._held
        held.clear()  # rebuilt from the stored trials: a hold lifted meanwhile must not queue twice
        to_continue: deque[int] = deque()
        for trial in self.state.unfinished_trials():
            self._trial_ids[trial.number] = trial_id_of(trial)
            if self.executor.trains_here and trial.number in self.pause_signal.held:
                held[trial.number] = trial.system_attrs.get(TRIAL_PAUSED_EPOCH_ATTR)
            else:
                to_continue.append(trial.number)
        with self.executor:
            try:
                return self._schedule(result, held, to_continue)
            finally:
                self.clock.save()

    def _schedule(self, result: ScheduleResult, held: dict[int, int | None], to_continue: deque[int]) -> ScheduleResult:
        """Start, wait for and record trials until none is running and none may start."""
        while True:
            for number in [n for n in held if n not in self.pause_signal.held]:
                logger.info("Trial %d was released: continuing it.", number)
                held.pop(number)
                to_continue.append(number)
            while self._may_start(result, len(held), len(to_continue)):
                self._start(to_continue.popleft() if to_continue else None)
            if not self.executor.running():
                if held and not self.pause_signal.is_requested():
                    logger.info("Only held trials are left: pausing the study until they are released.")
                    self.pause_signal.request(PauseReason.TRIAL)
                result.paused.update(held)
                result.timed_out = self.clock.out_of_time() and result.finished < self.config.budget.n_trials
                return result
            if self.pause_signal.is_requested():
                self.executor.pausing()
            for outcome in self.executor.wait(_WAIT_SECONDS):
                self._record(outcome, result)

    def stop_now(self) -> dict[int, int | None]:
        """After a second Ctrl+C: every paused trial, with the epoch each continues after.

        Those the executor stops now, those held, and those that paused already.
        """
        stopped = dict(self._held)
        stopped.update(self._result.paused)
        stopped.update(self.executor.stop_now())
        return stopped

    def _may_start(self, result: ScheduleResult, n_held: int, n_waiting: int) -> bool:
        if self.pause_signal.is_requested() or result.failed:
            return False
        n_active = len(self.executor.running())
        if n_active >= self.config.execution.max_concurrent_trials:
            return False
        if n_waiting > 0:  # started trials finish, as after Optuna's timeout
            return True
        return result.finished + n_active + n_held < self.config.budget.n_trials and not self.clock.out_of_time()

    def _start(self, continued: int | None) -> None:
        self.clock.start()
        if continued is not None:
            trial = reattach_trial(self.state, self._trial_ids[continued])
            if self.flow_run_id is not None:
                emit_trial_event("resumed", self.state.study.study_name, self.flow_run_id, trial.number)
        else:
            with self.state.sampler_lock:
                trial = self.state.study.ask()
                self.state.save_sampler()
            self._trial_ids[trial.number] = trial_id_of(trial)
        self.executor.start(trial)

    def _record(self, outcome: TrialOutcome, result: ScheduleResult) -> None:
        number = outcome.number
        if self.progress is not None:
            self.progress.trial_ended(number, outcome.state)
        if self.flow_run_id is not None:
            emit_trial_event(
                outcome.state, self.state.study.study_name, self.flow_run_id, number,
                {"epoch": outcome.epoch, "value": outcome.value},
            )
        if outcome.state in ("complete", "pruned"):
            result.finished += 1
            logger.info(
                "Trial %d %s after %d epochs: %s (%d of %d trials finished).",
                number, outcome.state, epochs_done(outcome.epoch),
                outcome.value if outcome.values is None else outcome.values, result.finished,
                self.config.budget.n_trials,
            )
        elif outcome.state == "paused":
            if self.pause_signal.is_requested():
                result.paused[number] = outcome.epoch
            else:  # paused on its own while the study goes on: held aside until released
                self._held[number] = outcome.epoch
        elif outcome.study_goes_on and len(result.failed_trials) + 1 < self.config.budget.max_failed_trials:
            result.failed_trials.append(outcome)
            logger.warning(
                "Trial %d failed: %s (%d of max_failed_trials=%d in this run).",
                number, outcome.error, len(result.failed_trials), self.config.budget.max_failed_trials,
            )
        else:
            if outcome.study_goes_on:
                result.failed_trials.append(outcome)
                outcome = replace(outcome, error=(
                    f"{outcome.error}. That makes {len(result.failed_trials)} failed trials in this run "
                    f"(max_failed_trials={self.config.budget.max_failed_trials}): the objective looks broken"
                ))
            result.failed.append(outcome)
            if outcome.kept:
                result.paused[number] = outcome.epoch
            self.pause_signal.request(PauseReason.TRIAL_FAILED)
        self.clock.save()

