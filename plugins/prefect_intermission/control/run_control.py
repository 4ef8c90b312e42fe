"""Pause and resume a study's flow run from outside, as the Prefect UI does.

`request_pause` sets the same PAUSED state the UI's Pause / Suspend button sets;
the running study notices it within a second, stores everything at the next epoch
boundary and suspends itself. `resume` (and `request_resume`) is the UI's Resume
button, or, with a time, a resume scheduled for then (`timed_resume.py`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from uuid import UUID, uuid4

from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun
from prefect.exceptions import NotPausedError, ObjectNotFound
from prefect.flow_runs import resume_flow_run
from prefect.states import Paused, Scheduled, Suspended

from prefect_intermission.control.timed_resume import (
    PAUSED_UNTIL,
    paused_until,
    schedule_resume,
)
from prefect_intermission.errors import FlowRunControlError
from prefect_intermission.study.config import grouped_parameters
from prefect_intermission.pausing.run_states import (
    CLI_PAUSE_KEY_PREFIX,
    FLOW_PAUSE_KEY_PREFIX,
)


def read_flow_run(flow_run_id: UUID) -> FlowRun:
    """The flow run, or a clear error when the server does not know it."""
    with get_client(sync_client=True) as client:
        try:
            return client.read_flow_run(flow_run_id)
        except ObjectNotFound as e:
            raise FlowRunControlError(
                f"No flow run {flow_run_id} on the Prefect server at this PREFECT_API_URL."
            ) from e


def request_pause(flow_run_id: UUID, *, key_prefix: str = CLI_PAUSE_KEY_PREFIX) -> FlowRun:
    """Ask a running study to pause at its next epoch boundary."""
    flow_run = read_flow_run(flow_run_id)
    state = flow_run.state
    if state is None or not state.is_running():
        raise FlowRunControlError(
            f"Flow run {flow_run_id} ({flow_run.name}) is {state.name if state else 'new'}, "
            "not Running: only a running study can be paused."
        )
    key = f"{key_prefix}{uuid4().hex}"
    requested = (
        Suspended(pause_key=key, message="Pause requested with `intermission pause`.")
        if flow_run.deployment_id is not None
        # A run outside a deployment cannot be rescheduled; it stops cleanly instead.
        else Paused(pause_key=key, reschedule=False, message="Pause requested with `intermission pause`.")
    )
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(flow_run_id, requested, force=True)
    return read_flow_run(flow_run_id)


@dataclass(frozen=True)
class Resumption:
    """What a resume request did to a study's flow run."""

    flow_run: FlowRun
    #: When it resumes: None for now (or already, with `already`).
    at: datetime | None = None
    #: It had left its pause before this request: resuming, or running again.
    already: bool = False
    #: It stays paused (Suspended) until `at`, so the UI's Resume can resume it sooner.
    keeps_resume_button: bool = True


def request_resume(flow_run_id: UUID, *, force: bool = False, at: datetime | None = None) -> FlowRun:
    """Resume a paused study now, or at `at`: a worker runs it again and it continues
    every trial. Asking again while a resume is pending changes nothing."""
    return resume(flow_run_id, force=force, at=at).flow_run


def resume(flow_run_id: UUID, *, force: bool = False, at: datetime | None = None) -> Resumption:
    """Resume a study now (`at` None) or (re)schedule its resume at `at`, whether it is
    paused or already waiting for a resume at a set time; what happened."""
    flow_run = _with_grouped_parameters(read_flow_run(flow_run_id))
    state = flow_run.state
    if state is not None and state.is_paused():
        return _resume_paused(flow_run, force=force, at=at)
    if _waits_for_timed_resume(flow_run):
        state = (
            Scheduled(
                scheduled_time=datetime.now(timezone.utc), name="Resuming",
                message="Resumed with `intermission resume`.",
            )
            if at is None else paused_until(flow_run_id, at)
        )
        with get_client(sync_client=True) as client:
            client.set_flow_run_state(flow_run_id, state, force=True)
        return Resumption(read_flow_run(flow_run_id), at, keeps_resume_button=False)
    if at is None and _resuming_or_resumed(flow_run):
        return Resumption(flow_run, already=True)  # a second request must not start a second execution
    raise FlowRunControlError(
        f"Flow run {flow_run_id} ({flow_run.name}) is {state.name if state else 'new'}, "
        "not paused: only a paused study can be resumed."
    )


def _with_grouped_parameters(flow_run: FlowRun) -> FlowRun:
    """A run paused by an earlier release stored its settings flat, which the study flow no
    longer binds: store them in their groups before it runs again."""
    grouped = grouped_parameters(flow_run.parameters)
    if grouped == flow_run.parameters:
        return flow_run
    with get_client(sync_client=True) as client:
        client.update_flow_run(flow_run.id, parameters=grouped)
    return flow_run.model_copy(update={"parameters": grouped})


def _resume_paused(flow_run: FlowRun, *, force: bool, at: datetime | None) -> Resumption:
    """Resume a Suspended study run now, or have it resume by itself at `at`."""
    state = flow_run.state
    assert state is not None
    key = state.state_details.pause_key or ""
    if not force and not key.startswith(FLOW_PAUSE_KEY_PREFIX):
        raise FlowRunControlError(
            f"Flow run {flow_run.id} is still pausing: its trials are finishing their current "
            "epoch and storing checkpoints. Try again in a few seconds, or pass --force if "
            "its process is gone."
        )
    if at is not None:
        timed = schedule_resume(flow_run, at, pause_key=key)
        return Resumption(read_flow_run(flow_run.id), timed.at, keeps_resume_button=timed.keeps_resume_button)
    try:
        resume_flow_run(flow_run.id)
    except (NotPausedError, RuntimeError):
        # Another request resumed it between our read and ours: that resume stands.
        resumed = read_flow_run(flow_run.id)
        if not _resuming_or_resumed(resumed):
            raise
        return Resumption(resumed, already=True)
    return Resumption(read_flow_run(flow_run.id))


def _waits_for_timed_resume(flow_run: FlowRun) -> bool:
    """Whether the run is scheduled to resume later, rather than paused (the way a timed pause
    waits without the `resume-study` deployment, and the way earlier releases scheduled it)."""
    state = flow_run.state
    if state is None or not state.is_scheduled() or state.name not in (PAUSED_UNTIL, "Resuming"):
        return False
    due = state.state_details.scheduled_time
    return due is not None and due > datetime.now(timezone.utc)


def _resuming_or_resumed(flow_run: FlowRun) -> bool:
    """Whether the run left its pause: scheduled to resume, or started again."""
    state = flow_run.state
    return state is not None and (state.is_scheduled() or state.is_pending() or state.is_running())


def parse_resume_time(at: str | None, within: str | None, *, now: datetime | None = None) -> datetime | None:
    """`--start-at` (ISO 8601, or HH:MM local time: the next such time) or `--start-in` (e.g. 90s, 45m, 2h30m)."""
    now = now or datetime.now(timezone.utc)
    if at and within:
        raise FlowRunControlError("Give either --start-at or --start-in, not both.")
    if within:
        match = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", within.strip())
        if not match or not any(match.groups()):
            raise FlowRunControlError(f"--start-in must look like 90s, 45m or 2h30m, but got {within!r}.")
        hours, minutes, seconds = (int(g or 0) for g in match.groups())
        return now + timedelta(hours=hours, minutes=minutes, seconds=seconds)
    if at:
        if re.fullmatch(r"\d{1,2}:\d{2}", at):
            hour, minute = (int(p) for p in at.split(":"))
            local = now.astimezone()
            try:
                moment = local.replace(hour=hour, minute=minute, second=0, microsecond=0)
            except ValueError as e:
                raise FlowRunControlError(f"--start-at {at!r} is not a time of day.") from e
            return (moment if moment > local else moment + timedelta(days=1)).astimezone(timezone.utc)
        try:
            moment = datetime.fromisoformat(at)
        except ValueError as e:
            raise FlowRunControlError(
                f"--start-at must be HH:MM or an ISO 8601 time such as 2026-11-23T22:00+01:00, but got {at!r}."
            ) from e
        return (moment if moment.tzinfo else moment.astimezone()).astimezone(timezone.utc)
    return None
