"""The API calls the Prefect UI makes for a flow run, and waits on their effects.

Used by `make demo` and the end-to-end tests to drive a study the way a user does.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from uuid import UUID, uuid4

import optuna
from sqlalchemy.exc import SQLAlchemyError
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment
from prefect.states import State, Suspended

from prefect_intermission.blocks.pause_policy import PausePolicy
from prefect_intermission.pausing.run_states import FLOW_PAUSE_KEY_PREFIX
from prefect_intermission.study.config import grouped_parameters
from prefect_intermission.study.flow_runs import STUDY_FLOW_NAME

UI_PAUSE_TIMEOUT_SECONDS = 300


def start_deployment_run(
    name: str, parameters: dict[str, Any], job_variables: dict[str, Any] | None = None
) -> FlowRun:
    """What the UI's "Run" / `prefect deployment run` does: schedule a run now (a study's
    settings may be given on their own, see `study_parameters`)."""
    return run_deployment(
        name, parameters=study_parameters(name, parameters), job_variables=job_variables, timeout=0,
        as_subflow=False,
    )


def study_parameters(deployment: str, parameters: dict[str, Any]) -> dict[str, Any]:
    """A run's parameters as the Custom run form sends them: for a study deployment, its
    settings in their groups, each group the deployment's with the run's settings over it
    (`{"n_trials": 2}` changes `budget.n_trials` alone); any other deployment's as given."""
    if not deployment.startswith(f"{STUDY_FLOW_NAME}/"):
        return parameters
    with get_client(sync_client=True) as client:
        defaults = client.read_deployment_by_name(deployment).parameters or {}
    grouped = grouped_parameters(parameters)
    return {
        **defaults,
        **{
            name: {**defaults[name], **value} if isinstance(value, dict) and isinstance(defaults.get(name), dict) else value
            for name, value in grouped.items()
        },
    }


def ui_pause(flow_run_id: UUID, timeout_seconds: int = UI_PAUSE_TIMEOUT_SECONDS) -> State:
    """The UI's Pause / Suspend button: force a `Suspended` state with a timeout; the state set."""
    with get_client(sync_client=True) as client:
        result = client.set_flow_run_state(
            flow_run_id, Suspended(timeout_seconds=timeout_seconds), force=True
        )
    return result.state


def policy_waiting_for_resume() -> str:
    """Save a pause policy that ignores the UI dialog's timeout, so that a run paused from the
    UI waits for Resume (instead of resuming by itself when the timeout passes); its name."""
    name = f"wait-for-resume-{uuid4().hex[:8]}"
    PausePolicy(ignore_ui_timeout=True).save(name)
    return name


def ui_resume(flow_run_id: UUID) -> None:
    """The UI's Resume button."""
    with get_client(sync_client=True) as client:
        client.resume_flow_run(flow_run_id)


def read_run(flow_run_id: UUID) -> FlowRun:
    """The flow run as the API has it now."""
    with get_client(sync_client=True) as client:
        return client.read_flow_run(flow_run_id)


def process_is_gone(flow_run: FlowRun) -> bool:
    """Whether the process that ran the flow run (its `infrastructure_pid`) has exited."""
    pid = int((flow_run.infrastructure_pid or "").rpartition(":")[2] or 0)
    if not pid:
        raise ValueError(f"Flow run {flow_run.id} has no infrastructure pid.")
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[-1].startswith("Z")  # a zombie has exited
    except FileNotFoundError:
        return True


def wait_for(condition: Callable[[], Any], *, timeout: float, what: str, every: float = 0.5) -> Any:
    """Poll `condition` until it returns something truthy; return that."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError(f"Timed out after {timeout} s waiting for {what}.")


def wait_for_state(flow_run_id: UUID, *names: str, timeout: float = 300) -> FlowRun:
    """Wait until the run's state name is one of `names`; fail fast on Failed/Crashed."""

    def reached() -> FlowRun | None:
        run = read_run(flow_run_id)
        name = run.state.name if run.state else None
        if name in names:
            return run
        if name in {"Failed", "Crashed"} and name not in names:
            raise RuntimeError(f"Flow run {flow_run_id} ended {name}: {run.state.message if run.state else ''}")
        return None

    return wait_for(reached, timeout=timeout, what=f"flow run state {' or '.join(names)}")


def wait_until_suspended_by_study(flow_run_id: UUID, timeout: float = 120) -> FlowRun:
    """Wait until the study itself has suspended its run (not just the UI's request): Suspended,
    with the study's own pause key."""

    def acknowledged() -> FlowRun | None:
        run = read_run(flow_run_id)
        key = (run.state.state_details.pause_key or "") if run.state else ""
        return run if run.state and run.state.name == "Suspended" and key.startswith(FLOW_PAUSE_KEY_PREFIX) else None

    return wait_for(acknowledged, timeout=timeout, what="the study to suspend its run")


def wait_until_paused_by_study(flow_run_id: UUID, timeout: float = 120) -> FlowRun:
    """Wait until the study's pause is complete: its run suspended by the study and its process
    gone (the process exits only once the pause's scheduled resume, if any, is in place)."""
    suspended = wait_until_suspended_by_study(flow_run_id, timeout)
    wait_for(lambda: process_is_gone(suspended), timeout=60, what="the flow's process to exit")
    return suspended


def wait_until_mid_training(storage: str, study_name: str, *, min_epochs: int = 2, timeout: float = 300) -> list[int]:
    """Wait until a trial of the study is RUNNING with `min_epochs` epochs reported."""

    def mid_training() -> list[int]:
        try:
            study = optuna.load_study(study_name=study_name, storage=storage)
        except (KeyError, SQLAlchemyError):  # not created yet, or its schema is being created
            return []
        return [
            t.number
            for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
            if len(t.intermediate_values) >= min_epochs
        ]

    return wait_for(mid_training, timeout=timeout, what=f"a trial of {study_name} to train {min_epochs} epochs")
