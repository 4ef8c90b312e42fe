"""Pause and resume a study's flow run from outside, as the Prefect UI does.

`request_pause` sets the same PAUSED state the UI's Pause / Suspend button sets;
the running study notices it within a second, stores everything at the next epoch
boundary and suspends itself. `request_resume` is the UI's Resume button.
"""

from __future__ import annotations

from uuid import UUID, uuid4

from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun
from prefect.exceptions import ObjectNotFound
from prefect.flow_runs import resume_flow_run
from prefect.states import Paused, Suspended

from prefect_intermission.errors import FlowRunControlError
from prefect_intermission.pause_signals import CLI_PAUSE_KEY_PREFIX, FLOW_PAUSE_KEY_PREFIX


def parse_flow_run_id(value: str) -> UUID:
    """A flow-run id from the command line, with a clear error when it is not one."""
    try:
        return UUID(value)
    except ValueError as e:
        raise FlowRunControlError(
            f"{value!r} is not a flow-run id; copy the id from the run's page in the Prefect "
            "UI or from `prefect flow-run ls`."
        ) from e


def read_flow_run(flow_run_id: UUID) -> FlowRun:
    """The flow run, or a clear error when the server does not know it."""
    with get_client(sync_client=True) as client:
        try:
            return client.read_flow_run(flow_run_id)
        except ObjectNotFound as e:
            raise FlowRunControlError(
                f"No flow run {flow_run_id} on the Prefect server at this PREFECT_API_URL."
            ) from e


def request_pause(flow_run_id: UUID) -> FlowRun:
    """Ask a running study to pause at its next epoch boundary."""
    flow_run = read_flow_run(flow_run_id)
    state = flow_run.state
    if state is None or not state.is_running():
        raise FlowRunControlError(
            f"Flow run {flow_run_id} ({flow_run.name}) is {state.name if state else 'new'}, "
            "not Running: only a running study can be paused."
        )
    key = f"{CLI_PAUSE_KEY_PREFIX}{uuid4().hex}"
    requested = (
        Suspended(pause_key=key, message="Pause requested with `intermission pause`.")
        if flow_run.deployment_id is not None
        # A run outside a deployment cannot be rescheduled; it stops cleanly instead.
        else Paused(pause_key=key, reschedule=False, message="Pause requested with `intermission pause`.")
    )
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(flow_run_id, requested, force=True)
    return read_flow_run(flow_run_id)


def request_resume(flow_run_id: UUID, *, force: bool = False) -> FlowRun:
    """Resume a suspended study: a worker runs it again and it continues every trial."""
    flow_run = read_flow_run(flow_run_id)
    state = flow_run.state
    if state is None or not state.is_paused():
        raise FlowRunControlError(
            f"Flow run {flow_run_id} ({flow_run.name}) is {state.name if state else 'new'}, "
            "not paused: only a paused study can be resumed."
        )
    key = state.state_details.pause_key or ""
    if not force and not key.startswith(FLOW_PAUSE_KEY_PREFIX):
        raise FlowRunControlError(
            f"Flow run {flow_run_id} is still pausing: its trials are finishing their current "
            "epoch and storing checkpoints. Try again in a few seconds, or pass --force if "
            "its process is gone."
        )
    resume_flow_run(flow_run_id)
    return read_flow_run(flow_run_id)
