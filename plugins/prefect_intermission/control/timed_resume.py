"""A paused study's resume at a set time, carried out while its run stays Suspended.

The time comes from the timeout typed in the UI's pause dialog, the pause policy's
`resume_cron`, or `intermission resume --start-at/--start-in`. The study's run stays Suspended, so
both Prefect UIs show it paused and offer their Resume, and the server never fails it
(the suspension has no timeout). The resume itself is a scheduled run of the
`resume-study` control deployment, tagged with the study's flow-run id: at its time it
resumes the study if, and only if, the study is still in the very pause it was
scheduled for (the same pause key). A resume that came earlier (Resume, `intermission
resume`, the nightly flow) makes it a no-op, and the study's next execution deletes it.

Without that deployment, the run itself is scheduled for the time, as a Scheduled
state named "Paused" (`PAUSED_UNTIL`): it resumes all the same, `intermission resume`
resumes it sooner, but the UI shows no Resume button for it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from uuid import UUID

from prefect import get_run_logger
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
    FlowRunFilterTags,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.client.schemas.sorting import FlowRunSort
from prefect.exceptions import MissingContextError, ObjectNotFound
from prefect.states import Scheduled, State

from prefect_intermission._times import shown_time
from prefect_intermission.settings import settings

logger = logging.getLogger(__name__)

#: The tag of a `resume-study` run that resumes the study run whose id follows it.
RESUME_TAG_PREFIX = "intermission-resumes:"
#: The name of the Scheduled state of a study run due to resume by itself without the
#: `resume-study` deployment: the run is paused until its scheduled time.
PAUSED_UNTIL = "Paused"


@dataclass(frozen=True)
class TimedResume:
    """When a paused study resumes by itself, and what carries it out."""

    at: datetime
    #: The scheduled `resume-study` run, or None when the study's own run is scheduled.
    control_run_id: UUID | None = None

    @property
    def keeps_resume_button(self) -> bool:
        """Whether the study's run stays Suspended (the UI's Resume resumes it sooner)."""
        return self.control_run_id is not None


def paused_until(flow_run_id: UUID, at: datetime) -> State:
    """The Scheduled state a study run waits in, paused until `at`, without `resume-study`."""
    return Scheduled(
        scheduled_time=at, name=PAUSED_UNTIL,
        message=(
            f"Paused until {shown_time(at)}, then it resumes by itself; "
            f"resume it now with `intermission resume {flow_run_id}`."
        ),
    )


def resumes_by_itself(flow_run_id: UUID | str, at: datetime, *, resume_button: bool = True) -> str:
    """The sentence that says when a paused study resumes by itself and how to resume it sooner."""
    sooner = "Resume on the run's page, or " if resume_button else ""
    return (
        f"The study resumes by itself at {shown_time(at)}; to resume it sooner: "
        f"{sooner}`intermission resume {flow_run_id}`."
    )


def resume_tag(flow_run_id: UUID | str) -> str:
    """The tag of the `resume-study` runs that resume the study run `flow_run_id`."""
    return f"{RESUME_TAG_PREFIX}{flow_run_id}"


def schedule_resume(flow_run: FlowRun, at: datetime, *, pause_key: str) -> TimedResume:
    """Have the suspended study run `flow_run` (in the pause `pause_key`) resume at `at`,
    replacing any resume scheduled for it before."""
    at = at.astimezone(timezone.utc)
    cancel_pending_resumes(flow_run.id)
    deployment_name = settings().resume_deployment
    with get_client(sync_client=True) as client:
        try:
            deployment = client.read_deployment_by_name(deployment_name)
        except ObjectNotFound:
            _logger().warning(
                "No deployment %r on this Prefect server: flow run %s is scheduled to run again at %s "
                "instead of staying Suspended, so the UI shows no Resume button for it until then "
                "(`intermission resume %s` resumes it sooner). Deploy the control flows "
                "(`intermission deploy`) to keep it.",
                deployment_name, flow_run.id, shown_time(at), flow_run.id,
            )
            client.set_flow_run_state(flow_run.id, paused_until(flow_run.id, at))
            return TimedResume(at)
        control = client.create_flow_run_from_deployment(
            deployment.id,
            parameters={"flow_run_id": str(flow_run.id), "pause_key": pause_key, "at": at.isoformat()},
            state=Scheduled(scheduled_time=at),
            name=f"resume-{flow_run.name}",
            tags=[resume_tag(flow_run.id)],
            idempotency_key=f"{resume_tag(flow_run.id)}:{pause_key}:{at.isoformat()}",
        )
    return TimedResume(at, control.id)


def _logger() -> logging.Logger | logging.LoggerAdapter:
    """The flow run's logger inside a run (the message belongs on its page), else this module's."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logger


def pending_resume(flow_run: FlowRun) -> TimedResume | None:
    """When the study run `flow_run` resumes by itself, if it is paused and due to."""
    state = flow_run.state
    if state is not None and state.is_scheduled() and state.state_details.scheduled_time is not None:
        return TimedResume(state.state_details.scheduled_time)
    if state is None or not state.is_paused():
        return None
    pending = _pending_resume_runs(flow_run.id)
    if not pending:
        return None
    first = pending[0]
    at = first.state.state_details.scheduled_time if first.state else None
    return TimedResume(at or first.expected_start_time, first.id)


def cancel_pending_resumes(flow_run_id: UUID) -> int:
    """Delete the `resume-study` runs still waiting to resume the study run; how many."""
    deleted = 0
    with get_client(sync_client=True) as client:
        for run in _pending_resume_runs(flow_run_id):
            try:
                client.delete_flow_run(run.id)
                deleted += 1
            except ObjectNotFound:  # deleted meanwhile by another execution
                pass
    return deleted


def _pending_resume_runs(flow_run_id: UUID) -> list[FlowRun]:
    """The scheduled `resume-study` runs of the study run, soonest first."""
    with get_client(sync_client=True) as client:
        return client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                tags=FlowRunFilterTags(all_=[resume_tag(flow_run_id)]),
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED])),
            ),
            sort=FlowRunSort.EXPECTED_START_TIME_ASC,
        )
