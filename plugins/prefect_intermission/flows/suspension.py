"""Carrying out a study's pause once everything is stored: suspend the run, hand it back to
the `prefect flow-run execute` that got SIGTERM, stop at once, or wait in the process for the
pause file to go. It sees the study's run through `PausingRun` (`StudyRun` is one), and
changes the flow run only through that run's `RunLink`.

A suspended run frees its machine; Resume (or `intermission resume`) executes it again
from the top. A run outside a deployment cannot be suspended: it ends Completed named
"Paused", and running it again continues the study. A run handed back is Scheduled again
by that supervisor (or run again by its infrastructure), and continues the same way.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Callable
from datetime import datetime
from typing import Any, NoReturn, Protocol
from uuid import UUID, uuid4

from prefect.client.schemas.objects import FlowRun
from prefect.events.worker import EventsWorker
from prefect.exceptions import Pause, TerminationSignal
from prefect.logging.handlers import APILogWorker
from prefect.states import Completed, Running, State, Suspended

from prefect_intermission._faults import fault_point
from prefect_intermission.blocks.pause_policy import PausePolicy
from prefect_intermission.control.timed_resume import resumes_by_itself
from prefect_intermission.flows._how_to_continue import (
    continue_instruction,
    epochs_text,
)
from prefect_intermission.flows.pause_announcement import PauseAnnouncer
from prefect_intermission.flows.process_exit import exit_at_once
from prefect_intermission.flows.run_link import RunLink
from prefect_intermission.pausing.reasons import PauseReason
from prefect_intermission.pausing.run_states import FLOW_PAUSE_KEY_PREFIX
from prefect_intermission.pausing.triggers import wait_until_removed
from prefect_intermission.reporting.links import flow_run_link
from prefect_intermission.reporting.notify import notify_in_background
from prefect_intermission.study.leases import StudyLease
from prefect_intermission.study.scheduler import ScheduleResult, TrialScheduler
from prefect_intermission.study.state import StudyState
from prefect_intermission.training._memory import release_memory
from prefect_intermission.training.pause_signal import PauseSignal

logger = logging.getLogger("prefect_intermission")


class PausingRun(Protocol):
    """What carrying out a pause needs of the execution of the study's run."""

    study_name: str
    flow_run: FlowRun
    link: RunLink
    execution: UUID | None  # the Running state this execution began with
    signal: PauseSignal
    policy: PausePolicy | None
    state: StudyState
    scheduler: TrialScheduler
    lease: StudyLease
    announcer: PauseAnnouncer
    logger: logging.LoggerAdapter[Any] | logging.Logger

    @property
    def in_deployment(self) -> bool: ...

    def how_to_resume(self) -> str | None: ...

    def say(self, message: str) -> None: ...


def _expired_pause(state: State) -> bool:
    """Whether the server failed the run because a pause timed out before we suspended it."""
    return state.is_failed() and "paused and never resumed" in (state.message or "")


def suspend(
    run: PausingRun,
    result: ScheduleResult,
    *,
    resume_at: datetime | None = None,
    on_stopped: Callable[[], object] = lambda: None,
) -> State:
    """Suspend the flow run (or, outside a deployment, end it) once everything is stored."""
    study_name, flow_run = run.study_name, run.flow_run
    summary = f"Study {study_name!r} paused: trials {epochs_text(result.paused)}; checkpoints and study state stored."
    if not run.in_deployment:
        message = (
            f"{summary} This run is not part of a deployment, so it cannot be suspended; "
            f"{continue_instruction(study_name)}"
        )
        run.say(message)
        on_stopped()
        return Completed(
            name="Paused",
            message=message,
            data={"study_name": study_name, "status": "paused", "paused_trials": result.paused},
        )
    _take_back_the_pause(run, summary)
    run.logger.info(
        "%s Suspending the flow run; resume it with the UI's Resume button%s or `intermission resume %s`.",
        summary, flow_run_link(flow_run.id), flow_run.id,
    )
    fault_point("flow.suspend")
    pause_key = f"{FLOW_PAUSE_KEY_PREFIX}{uuid4().hex}"
    try:
        run.link.suspend(pause_key)
    except Pause:
        # Suspended, with no timeout: the pause is complete. Schedule the resume (the run
        # stays Suspended, so Resume still resumes it sooner) and tell people, then exit as
        # soon as Prefect's engine has reported the run's state and sent its logs.
        if resume_at is not None:
            timed = run.link.schedule_resume(resume_at, pause_key)
            run.logger.info("%s", resumes_by_itself(flow_run.id, timed.at, resume_button=timed.keeps_resume_button))
        on_stopped()
        exit_at_once()
        raise


_HANDED_BACK = {
    "reschedule": (
        "`prefect flow-run execute` got SIGTERM (its pod or machine is stopping) and Prefect "
        "rescheduled this run: a worker starts it again, on another pod, and it continues every "
        "trial from its checkpoint. Nothing to do."
    ),
    "relinquish": (
        "`prefect flow-run execute` got SIGTERM and left this run to its infrastructure "
        "(`PREFECT_FLOW_RUN_EXECUTE_SIGTERM_BEHAVIOR=relinquish`), which runs it again; that "
        "execution continues every trial from its checkpoint."
    ),
}


def handed_back_resume(run: PausingRun, intent: str) -> tuple[datetime | None, str]:
    """When a run handed back to its supervisor (`intent`) runs again, and how its pause summary says so."""
    state = run.link.read().state
    scheduled = state.state_details.scheduled_time if state is not None and state.is_scheduled() else None
    return scheduled, _HANDED_BACK[intent]


def hand_back(run: PausingRun, result: ScheduleResult, intent: str, *, on_stopped: Callable[[], object]) -> NoReturn:
    """End this execution, once everything is stored, as Prefect's engine ends it for a
    `prefect flow-run execute` supervisor's SIGTERM: that supervisor owns the run's next state.

    Under "reschedule" it has put the run back to Scheduled (AwaitingRetry) for the next pod;
    under "relinquish" the infrastructure runs it again. `TerminationSignal`, what Prefect's
    own SIGTERM handler raises, makes the engine exit without proposing a state.
    """
    run.say(
        f"Study {run.study_name!r} paused: trials {epochs_text(result.paused)}; checkpoints and study "
        f"state stored. {_HANDED_BACK[intent]}"
    )
    on_stopped()
    exit_at_once()  # once the engine has ended this execution as it does for that SIGTERM
    raise TerminationSignal(signal.SIGTERM)


def _take_back_the_pause(run: PausingRun, summary: str) -> None:
    """Replace a pause request (or the failure its expiry left) with Running, so that our own
    suspension, which waits without a timeout, can follow; leave a run resumed meanwhile alone."""
    flow_run_id = run.flow_run.id
    current = run.link.read().state
    if current is not None and current.is_running() and current.id != run.execution:
        logger.warning(
            "Flow run %s was resumed before it finished pausing and another execution "
            "has started; leaving the run to it.", flow_run_id,
        )
        raise Pause(f"{summary} Resumed while pausing.")
    if current is not None and (current.is_paused() or _expired_pause(current)):
        run.link.set_state(Running(message="Pause carried out; suspending."))
    elif current is not None and not current.is_running():
        logger.warning(
            "Flow run %s was resumed (%s) before it finished pausing; leaving it to the "
            "new execution.", flow_run_id, current.name,
        )
        raise Pause(f"{summary} Resumed while pausing.")


def stop_now(run: PausingRun) -> NoReturn:
    """After a second Ctrl+C: store what can be stored, mark the run paused, exit at once.

    The trials being trained are marked paused at their last checkpoint (their epoch
    in progress is lost) and the sampler and the pause are stored; then the process
    exits without waiting for those trials, so nothing after that is recorded.
    """
    study_name, flow_run = run.study_name, run.flow_run
    run.signal.stop_recording()  # an epoch being stored is finished; no other starts
    result = ScheduleResult(finished=run.state.finished_count(), paused=run.scheduler.stop_now())
    entry = run.announcer.record(PauseReason.SIGNAL, result)
    if run.scheduler.executor.trains_here:
        trials_text = (
            f"trials {epochs_text(result.paused)} continue from these checkpoints and train the "
            "epoch they were in again"
        )
    else:
        trials_text = (
            f"trials {epochs_text(result.paused)} are paused or pause in their own runs after the "
            "epoch they are in"
        )
    message = (
        f"Study {study_name!r} stopped at once (second Ctrl+C): {trials_text}; the sampler "
        "and study state are stored."
    )
    if not run.in_deployment:
        message = f"{message} {continue_instruction(study_name)}"
        stopped: State = Completed(name="Paused", message=message)
        exit_code = 130  # the shell's code for a run ended by Ctrl+C
    else:
        message = f"{message} Resume it with `intermission resume {flow_run.id}`."
        stopped = Suspended(pause_key=f"{FLOW_PAUSE_KEY_PREFIX}{uuid4().hex}")
        exit_code = 0  # suspended, as after any pause: the worker must not mark it crashed
    try:
        run.link.set_state(stopped)
    except Exception:  # the study is stored: running it again continues it all the same
        run.logger.warning("Could not mark flow run %s paused.", flow_run.id, exc_info=True)
    run.logger.warning(message)
    print(message, file=sys.stderr, flush=True)
    run.announcer.announce(entry, resume_at=None, how_to_resume=run.how_to_resume()).notify(message)
    APILogWorker.drain_all(timeout=10)
    EventsWorker.drain_all(timeout=10)
    sys.stdout.flush()
    run.lease.close()  # last: the next execution may start at once, and nothing here records any more
    os._exit(exit_code)  # the trials' threads are not waited for: that is the point


def wait_for_pause_file(run: PausingRun, result: ScheduleResult) -> State | None:
    """Store the pause, say so, and wait in this process until the pause file is deleted.

    Returns None once it is deleted (the study goes on), or the run's final state if
    another pause reason (Ctrl+C, a key, a lost lease) ended the wait: the study stays
    paused, and running it again continues it.
    """
    assert run.policy is not None and run.policy.pause_file is not None
    path = str(run.policy.pause_file)
    entry = run.announcer.record(PauseReason.FILE, result)
    announced = run.announcer.announce(
        entry, resume_at=None, how_to_resume=f"Delete `{path}`: the study resumes in its process."
    )
    run.say(
        f"Study {run.study_name!r} paused by the pause file: trials {epochs_text(result.paused)}; "
        f"checkpoints and study state stored. Delete {path} to resume it in this process."
    )
    announced.notify()
    release_memory()  # the paused trials' models and loaders, and the GPU's cached blocks, while it waits
    try:
        wait_until_removed(path, unless=lambda: len(run.signal.reasons) > 1)
    except KeyboardInterrupt:
        run.signal.request(PauseReason.SIGNAL)
    if len(run.signal.reasons) > 1:  # Ctrl+C, a key, a lost lease...: stop waiting, stay paused
        stopped = (
            f"Stopped waiting for {path} to be deleted ({run.signal.reasons[1]}); the study stays "
            f"paused: {continue_instruction(run.study_name)}"
        )
        run.say(stopped)
        return Completed(name="Paused", message=stopped)
    resumed = f"Pause file {path} deleted: study {run.study_name!r} resumes."
    run.say(resumed)
    run.link.emit("resumed", run.study_name, {"continuing": sorted(result.paused)})
    notify_in_background(run.policy, f"Study {run.study_name} resumed", resumed)
    return None
