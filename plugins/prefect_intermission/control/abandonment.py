"""Studies paused for longer than their pause policy allows count as abandoned.

A suspended study run whose pause policy sets `abandon_after_hours` and that has waited
longer is cancelled with the state name "Abandoned", an `intermission.study.abandoned`
event is emitted and the policy's notifications are sent. Nothing stored is touched:
running the study again with the same `study_name` continues every trial from its
checkpoint.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone

from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.client.schemas.responses import SetStateStatus
from prefect.states import Cancelled

from prefect_intermission.blocks.pause_policy import PausePolicy
from prefect_intermission.pausing.run_states import FLOW_PAUSE_KEY_PREFIX
from prefect_intermission.reporting.events import emit_study_event
from prefect_intermission.reporting.notify import notify
from prefect_intermission.study.flow_runs import study_config_of, study_name_of

logger = logging.getLogger(__name__)

#: The state name of a study run cancelled because its pause outlasted `abandon_after_hours`.
ABANDONED_STATE_NAME = "Abandoned"


@dataclass(frozen=True)
class Abandoned:
    """A study run that was abandoned, and after how long."""

    study_name: str
    flow_run_id: str
    paused_at: datetime
    hours: float


def _paused_since(run: FlowRun) -> datetime | None:
    """When the study suspended itself, if it is suspended now."""
    state = run.state
    if state is None or state.type != StateType.PAUSED:
        return None
    if not (state.state_details.pause_key or "").startswith(FLOW_PAUSE_KEY_PREFIX):
        return None  # still pausing: its process is storing checkpoints
    return state.timestamp


def abandon_expired_pauses(runs: list[FlowRun], *, now: datetime | None = None) -> list[Abandoned]:
    """Cancel, as abandoned, each suspended run in `runs` whose policy's limit has passed."""
    now = now or datetime.now(timezone.utc)
    policies: dict[str, PausePolicy | None] = {}
    abandoned = []
    for run in runs:
        paused_at = _paused_since(run)
        name = study_config_of(run).pausing.pause_policy
        if paused_at is None or not name:
            continue
        if name not in policies:
            policies[name] = _load(name)
        policy = policies[name]
        if policy is None or policy.abandon_after_hours is None:
            continue
        waited = (now - paused_at).total_seconds() / 3600
        if waited <= policy.abandon_after_hours:
            continue
        try:
            if (done := _abandon(run, policy, paused_at, waited)) is not None:
                abandoned.append(done)
        except Exception:  # one run the API refuses must not keep the others waiting
            logger.warning("Could not abandon flow run %s; it stays paused.", run.id, exc_info=True)
    return abandoned


def _load(name: str) -> PausePolicy | None:
    try:
        return PausePolicy.load(name)
    except ValueError:
        logger.warning("Pause policy %r cannot be loaded; its studies are not checked.", name)
        return None


def _abandon(run: FlowRun, policy: PausePolicy, paused_at: datetime, waited: float) -> Abandoned | None:
    study_name = study_name_of(run)
    message = (
        f"Study {study_name!r} was paused for {waited:.2f} hours, longer than the "
        f"{policy.abandon_after_hours} hours its pause policy allows, and counts as abandoned. "
        "Its trials and checkpoints are kept: run the study again with "
        f"study_name={study_name!r} to continue it from where it stopped."
    )
    with get_client(sync_client=True) as client:
        current = client.read_flow_run(run.id).state
        if current is None or run.state is None or current.id != run.state.id:
            return None  # resumed (or changed) since it was listed: not abandoned
        answer = client.set_flow_run_state(run.id, Cancelled(name=ABANDONED_STATE_NAME, message=message))
    if answer.status != SetStateStatus.ACCEPT:
        logger.info("Flow run %s was not abandoned: the server answered %s.", run.id, answer.status.value)
        return None  # it changed meanwhile (e.g. resumed): nothing to announce
    logger.info(message)
    emit_study_event(
        "abandoned", study_name, run.id,
        {"paused_at": paused_at.isoformat(), "hours_paused": round(waited, 3),
         "abandon_after_hours": policy.abandon_after_hours},
    )
    notify(policy, f"Study {study_name} abandoned", message)
    return Abandoned(study_name, str(run.id), paused_at, waited)
