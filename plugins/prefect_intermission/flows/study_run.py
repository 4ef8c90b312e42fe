"""One execution of a study's flow run: continue, train, then complete, fail or pause.

A `StudyRun` holds what the execution needs once (the configuration, the study, the
checkpoint store, the pause signal, the flow run, its lease and policy) and has one
method per phase. It reads and changes its flow run only through a `RunLink`
(`flows/run_link.py`), so its decisions are tested without a server. Carrying out a pause (suspending the run, or stopping at once after
a second Ctrl+C) is in `flows/suspension.py`; making a pause known (recorded, summarised,
emitted, notified) in `flows/pause_announcement.py`.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from datetime import datetime
from typing import Any

from prefect import get_run_logger
from prefect.states import State

from prefect_intermission.blocks.pause_policy import PausePolicy
from prefect_intermission.control.stopping import (
    is_stopping,
    prune_unfinished,
    stop_trigger,
)
from prefect_intermission.errors import IntermissionError
from prefect_intermission.flows import suspension
from prefect_intermission.flows._how_to_continue import continue_markdown, epochs_text
from prefect_intermission.flows.pause_announcement import PauseAnnouncer
from prefect_intermission.flows.run_link import RunLink
from prefect_intermission.pausing.holds import TrialHolds
from prefect_intermission.pausing.interrupts import (
    PauseOnSignals,
    StopNow,
    supervisor_intent,
)
from prefect_intermission.pausing.keys import PauseKeys
from prefect_intermission.pausing.reasons import PauseReason, describe
from prefect_intermission.pausing.run_states import pause_reason_of_state
from prefect_intermission.pausing.triggers import (
    pause_file_trigger,
    pause_window_trigger,
)
from prefect_intermission.pausing.watcher import FlowRunPauseWatcher
from prefect_intermission.reporting.artifacts import ArtifactReporter
from prefect_intermission.reporting.notify import (
    notify,
    notify_after_the_run,
    notify_in_background,
)
from prefect_intermission.reporting.progress import StudyProgress
from prefect_intermission.reporting.terminal import TerminalProgress
from prefect_intermission.study.config import StudyConfig
from prefect_intermission.study.leases import StudyLease
from prefect_intermission.study.results import best_text, best_trials, pareto_front, several_objectives
from prefect_intermission.study.resuming import check_checkpoints, continuation
from prefect_intermission.study.scheduler import ScheduleResult, TrialScheduler
from prefect_intermission.study.state import StudyState
from prefect_intermission.training.pause_signal import PauseSignal
from prefect_intermission.training.store import CheckpointStore


class StudyRun:
    """One execution of a study's flow run, holding the study's lease."""

    def __init__(
        self,
        config: StudyConfig,
        *,
        state: StudyState,
        store: CheckpointStore,
        signal: PauseSignal,
        link: RunLink,
        lease: StudyLease,
        policy: PausePolicy | None,
        scheduler: TrialScheduler,
        progress: StudyProgress,
        logger: logging.Logger | logging.LoggerAdapter[Any] | None = None,
    ) -> None:
        self.config = config
        self.state = state
        self.store = store
        self.signal = signal
        self.link = link
        self.flow_run = link.flow_run
        self.lease = lease
        self.policy = policy
        self.scheduler = scheduler
        self.progress = progress
        self.study_name = config.study_name
        self.logger = logger if logger is not None else get_run_logger()
        self.reporter = ArtifactReporter(self.flow_run.id, progress, open_client=link.artifacts)
        self.announcer = PauseAnnouncer(config, state, store, link, policy, self.reporter)
        self.holds = TrialHolds(state.engine, self.study_name)
        self.execution = link.read().state.id  # the Running state this execution began with
        signal.on_request(self.announce_pause)
        self.ui_resume_at: datetime | None = None  # the timeout typed in the UI's pause dialog

    @property
    def in_deployment(self) -> bool:
        """Whether the run belongs to a deployment (only then can it be suspended)."""
        return self.flow_run.deployment_id is not None

    def execute(self) -> dict[str, Any] | State:
        """Every phase in turn; the flow's return value."""
        check_checkpoints(
            self.state, self.store, restart_trials_without_checkpoints=self.config.checkpointing.restart_trials_without_checkpoints
        )
        if self.state.stop_request() is not None:  # stopped while paused: nothing more to train
            return self.stop_and_save(ScheduleResult(finished=self.state.finished_count()))
        self.continue_study()
        try:
            with self.reporter, TerminalProgress(self.progress):
                result = self.train()
        except StopNow:
            suspension.stop_now(self)
        if isinstance(result, State):  # stopped waiting for the pause file: stays paused
            return result
        if result.failed:
            self.fail(result)
        if is_stopping(self.state, self.signal.reason):
            return self.stop_and_save(result)
        if not self.signal.is_requested() and (late := pause_reason_of_state(self.link.read().state)):
            # Paused after the last trial ended: Prefect would end the run with that pause
            # (and its timeout). Carry it out like any other; resuming then completes at once.
            self.signal.request(late)
        if self.signal.is_requested():
            return self.pause(result)
        return self.complete(result)

    def continue_study(self) -> None:
        """Release held trials and say which unfinished trials this execution continues."""
        if self.in_deployment:
            self._drop_pending_resumes()
        if released := self.holds.release_all():
            self.logger.info("Held trial(s) %s resume with the study.", ", ".join(f"#{n}" for n in sorted(released)))
        continuing = continuation(self.state, self.config.budget.n_trials)
        if not continuing.anything:
            return
        self.logger.info("%s", continuing.log_line())
        if continuing.unfinished:
            self.link.emit("resumed", self.study_name, {"continuing": [t.number for t in continuing.unfinished]})
            notify_in_background(  # the first epoch must not wait for it
                self.policy, f"Study {self.study_name} resumed",
                f"Study {self.study_name!r} resumed (flow run {self.flow_run.id}): {continuing.finished} of "
                f"{self.config.budget.n_trials} trials finished; continuing {continuing.trials_text}.",
            )

    def _drop_pending_resumes(self) -> None:
        """A study resumed before its set time no longer needs the resume scheduled for then."""
        try:
            dropped = self.link.cancel_pending_resumes()
        except Exception:  # it would find the study resumed and do nothing: harmless
            self.logger.warning("Could not delete the resume scheduled for this run.", exc_info=True)
            return
        if dropped:
            self.logger.info("Resumed before its scheduled resume, which is deleted: it is no longer needed.")

    def train(self) -> ScheduleResult | State:
        """Train until done or paused; a pause by the pause file alone may be waited out here."""
        triggers = self._policy_triggers()
        while True:
            watcher = FlowRunPauseWatcher(self.link, self.signal, triggers=triggers, holds=self.holds)
            with watcher, PauseOnSignals(self.signal, self.flow_run.id), PauseKeys(self.signal):
                result = self.scheduler.run()
            self.ui_resume_at = watcher.ui_resume_at
            if result.failed or not self._waits_in_process(result):
                return result
            with PauseOnSignals(self.signal, self.flow_run.id):  # SIGTERM or Ctrl+C: stop waiting, stay paused
                stopped = suspension.wait_for_pause_file(self, result)
            if stopped is not None:
                return stopped
            self.signal.clear()

    def announce_pause(self, reason: str) -> None:
        """Say on the run's log, as soon as a pause is asked, what it waits for."""
        training = [t.number for t in self.progress.trials() if t.state == "running"]
        if not training:  # nothing to wait for: the lines that follow tell the rest
            return
        where = "" if self.scheduler.executor.trains_here else " in their own runs"
        then = "the run suspends" if self.in_deployment else "the run ends, paused"
        if supervisor_intent() is not None:
            then = "the run is left to `prefect flow-run execute`, which sent SIGTERM"
        if reason == PauseReason.STOP:
            then = "they are recorded pruned and the study completes with its best trial"
        boundary = (
            "stop at their next step" if self.config.training.pause_granularity == "step"
            else "stop at their next boundary (their next step where they can pause within an epoch, "
            "else the end of the epoch)"
        )
        self.logger.info(
            "Pause requested (%s): trials %s %s%s, then %s.",
            describe(reason), ", ".join(f"#{n}" for n in training), boundary, where, then,
        )

    def how_to_resume(self) -> str | None:
        """Markdown for runs outside a deployment (run them again); None: Resume and `intermission resume`."""
        return None if self.in_deployment else continue_markdown(self.study_name)

    def fail(self, result: ScheduleResult) -> None:
        """A trial failed: the others are paused; say what failed and how to continue."""
        self.announcer.record(PauseReason.TRIAL_FAILED, result)
        first = result.failed[0]
        fix = "what the error names" if first.kept else "the objective"
        message = (
            f"Trial {first.number} of study {self.study_name!r} failed: {first.error}. "
            f"Trials {epochs_text(result.paused)} were paused with their checkpoints. Fix "
            f"{fix} and run the study again with the same study_name to continue it."
        )
        notify(self.policy, f"Study {self.study_name} failed", message)
        raise IntermissionError(message)

    def pause(self, result: ScheduleResult) -> State:
        """Record the pause, publish its summary, and suspend the run (or end it, outside a
        deployment; or, after a `prefect flow-run execute` supervisor's SIGTERM, leave it to it)."""
        entry = self.announcer.record(self.signal.reason or PauseReason.UNKNOWN, result)
        handed_back = supervisor_intent()
        if handed_back is not None:
            resume_at, how_to_resume = suspension.handed_back_resume(self, handed_back)
        else:
            resume_at, how_to_resume = self._resume_time(), self.how_to_resume()
        announced = self.announcer.announce(entry, resume_at=resume_at, how_to_resume=how_to_resume)
        if handed_back is not None:
            suspension.hand_back(self, result, handed_back, on_stopped=announced.notify)
        return suspension.suspend(self, result, resume_at=resume_at, on_stopped=announced.notify)

    def stop_and_save(self, result: ScheduleResult) -> dict[str, Any]:
        """Stop & Save: record the unfinished trials PRUNED at their last epoch, then complete."""
        pruned = prune_unfinished(self.state)
        self.state.clear_stop_request()
        if pruned:
            self.logger.info(
                "Stop & Save: trial(s) %s recorded pruned at their last epoch (value %s).",
                ", ".join(f"#{n}" for n in pruned), ", ".join(f"{v:.6g}" if v is not None else "none" for v in pruned.values()),
            )
        result.finished = self.state.finished_count()
        result.stopped = True
        return self.complete(result)

    def complete(self, result: ScheduleResult) -> dict[str, Any]:
        """Every trial is finished (or `timeout` is spent): report the best one(s)."""
        study = self.state.study
        if result.stopped:
            ended = f"stopped early (Stop & Save) with {result.finished} of {self.config.budget.n_trials} trials finished"
        elif result.timed_out:
            ended = (
                f"its timeout of {self.config.budget.timeout:g} s of training is spent, with {result.finished} of "
                f"{self.config.budget.n_trials} trials finished"
            )
        else:
            ended = f"{result.finished} trials finished"
        failed = f", {len(result.failed_trials)} failed" if result.failed_trials else ""
        completed = f"Study {self.study_name!r} complete: {ended}{failed}; {best_text(study)}.{self._best_checkpoint_text()}"
        self.logger.info(completed)
        best = best_trials(study)
        single = best[0] if len(best) == 1 and not several_objectives(study) else None
        summary: dict[str, Any] = {
            "finished_trials": result.finished,
            "failed_trials": len(result.failed_trials),
            "timed_out": result.timed_out,
            "stopped": result.stopped,
            "best_trial": single.number if single else None,
            "best_value": single.value if single else None,
            "best_params": single.params if single else None,
        }
        if several_objectives(study):
            summary["pareto_front"] = pareto_front(study)
        self.link.emit("completed", self.study_name, summary)
        notify_after_the_run(self.flow_run.id, self.policy, f"Study {self.study_name} completed", completed)
        return {"study_name": self.study_name, "status": "completed", **summary}

    def _best_checkpoint_text(self) -> str:
        """Where the best trial's best checkpoint is, and how to take its weights out."""
        best = best_trials(self.state.study)
        if len(best) != 1 or len(self.state.study.directions) != 1:
            return ""
        path = self.store.for_trial(self.study_name, best[0].number).best_path()
        if path is None:
            return ""
        return (
            f" Its best checkpoint: {path} (`intermission best {self.study_name} --output best-model` "
            "writes its weights)."
        )

    def say(self, message: str) -> None:
        """Log `message` to the run and print it in the terminal."""
        self.logger.info(message)
        print(message, file=sys.stderr)

    def _resume_time(self) -> datetime | None:
        """When the suspended run resumes by itself: the timeout typed in the UI's pause dialog
        (unless the policy ignores it) or the policy's `resume_cron`, whichever comes first."""
        if not self.in_deployment:
            return None
        ui_timeout = self.ui_resume_at
        if ui_timeout is None:  # Prefect saw the pause before the watcher did: it is still on the run
            state = self.link.read().state
            ui_timeout = state.state_details.pause_timeout if state is not None and state.is_paused() else None
        if self.policy is None:
            return ui_timeout
        return self.policy.resume_time(ui_timeout)

    def _waits_in_process(self, result: ScheduleResult) -> bool:
        """A run outside a deployment, training its trials itself, paused by its pause file
        alone and with trials left, waits in its process for the file to go."""
        return (
            self.signal.reasons == [PauseReason.FILE] and not self.in_deployment
            and self.scheduler.executor.trains_here and self.policy is not None
            and self.policy.pause_file is not None and result.finished < self.config.budget.n_trials
        )

    def _policy_triggers(self) -> list[Callable[[], str | None]]:
        """The pause file and the next pause window of the policy, as watcher triggers."""
        triggers = [stop_trigger(self.state)]
        if self.policy is not None and self.policy.pause_file:
            triggers.append(pause_file_trigger(self.policy.pause_file))
        if self.policy is not None and (at := self.policy.next_pause_time()) is not None:
            triggers.append(pause_window_trigger(at))
        return triggers
