"""Control flows: pause a study, stop it early (Stop & Save), resume one at its set time, and
resume paused studies, as deployments.

Deployed from prefect.yaml, they are buttons on the UI's deployment pages and
`prefect deployment run` commands; the nightly, hourly and five-minute ones run on cron schedules.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from uuid import UUID

from prefect import flow, get_run_logger
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterName,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.client.schemas.sorting import FlowRunSort

from prefect_intermission.control.abandonment import abandon_expired_pauses
from prefect_intermission.control.pause_files import resume_deleted_pause_files
from prefect_intermission.control.run_control import (
    read_flow_run,
    request_pause,
    request_resume,
    resume,
)
from prefect_intermission.control.stopping import stop_study
from prefect_intermission.errors import FlowRunControlError
from prefect_intermission.pausing.run_states import (
    CONTROL_PAUSE_KEY_PREFIX,
    FLOW_PAUSE_KEY_PREFIX,
)
from prefect_intermission.study.flow_runs import read_study_runs


def _study_runs(state: StateType, name: str | None = None) -> list[FlowRun]:
    return read_study_runs(
        FlowRunFilter(
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[state])),
            name=FlowRunFilterName(any_=[name]) if name else None,
        ),
        sort=FlowRunSort.START_TIME_DESC,
    )


@flow(name="pause-study", log_prints=True)
def pause_study(study_name: str | None = None, flow_run_id: str | None = None) -> str:
    """Pause a running study (by name, or by its flow-run id) at its next epoch boundary."""
    if bool(study_name) == bool(flow_run_id):
        raise FlowRunControlError("Give exactly one of study_name and flow_run_id.")
    if flow_run_id:
        target = UUID(flow_run_id)
    else:
        running = _study_runs(StateType.RUNNING, study_name)
        if not running:
            raise FlowRunControlError(f"No running study named {study_name!r}: nothing to pause.")
        target = running[0].id
    paused = request_pause(target, key_prefix=CONTROL_PAUSE_KEY_PREFIX)
    print(f"Pause requested for study {paused.name} (flow run {paused.id}).")
    return str(paused.id)


@flow(name="stop-study", log_prints=True)
def stop_study_flow(study_name: str) -> str:
    """Stop & Save: end a study early, running or paused; its trials in flight are recorded
    pruned at their last epoch and its run completes with its best trial."""
    message = stop_study(study_name, by="the stop-study deployment")
    print(message)
    return message


@flow(name="abandon-expired-pauses", log_prints=True)
def abandon_expired_pauses_flow() -> list[str]:
    """Cancel, as abandoned, suspended studies paused longer than their policy's `abandon_after_hours`."""
    abandoned = abandon_expired_pauses(_study_runs(StateType.PAUSED))
    print(f"Abandoned {len(abandoned)} stud{'y' if len(abandoned) == 1 else 'ies'}: "
          f"{', '.join(a.study_name for a in abandoned) or 'none'}.")
    return [a.study_name for a in abandoned]


@flow(name="resume-deleted-pause-files", log_prints=True)
def resume_deleted_pause_files_flow() -> list[str]:
    """Resume suspended studies paused by their policy's pause file once that file is deleted
    (the file must be visible where this flow runs)."""
    resumed = resume_deleted_pause_files(_study_runs(StateType.PAUSED))
    print(f"Resumed {len(resumed)} stud{'y' if len(resumed) == 1 else 'ies'} whose pause file was deleted: "
          f"{', '.join(resumed) or 'none'}.")
    return resumed


@flow(name="resume-study", log_prints=True)
def resume_study(flow_run_id: str, pause_key: str, at: datetime | None = None) -> bool:
    """Resume a paused study at the time it was scheduled to resume, `at` (a paused study
    schedules this run itself), if it is still in that pause: resumed sooner, or paused
    again since, it is left alone. Whether it resumed it."""
    if at is not None and (early := (at - datetime.now(timezone.utc)).total_seconds()) > 0:
        time.sleep(early)  # a worker may start a scheduled run a little early (its prefetch)
    target = read_flow_run(UUID(flow_run_id))
    state = target.state
    if state is None or not state.is_paused() or state.state_details.pause_key != pause_key:
        print(
            f"Study {target.name} (flow run {target.id}) is {state.name if state else 'new'}, no longer in "
            "the pause this resume was scheduled for (resumed sooner, or paused again since): nothing to do."
        )
        return False
    resumed = resume(target.id)
    if resumed.already:
        print(f"Study {target.name} (flow run {target.id}) was resumed meanwhile: nothing to do.")
        return False
    print(f"Resumed study {target.name} (flow run {target.id}) at its scheduled time.")
    return True


@flow(name="resume-paused-studies", log_prints=True)
def resume_paused_studies(study_name_prefix: str = "") -> list[str]:
    """Resume every suspended study whose name starts with `study_name_prefix`, except
    those paused longer than their policy's `abandon_after_hours` (abandoned instead)."""
    logger = get_run_logger()
    resumed = []
    matching = [r for r in _study_runs(StateType.PAUSED) if r.name.startswith(study_name_prefix)]
    abandoned = {a.flow_run_id for a in abandon_expired_pauses(matching)}
    for run in matching:
        if str(run.id) in abandoned:
            continue
        key = (run.state.state_details.pause_key or "") if run.state else ""
        if not run.name.startswith(study_name_prefix) or not key.startswith(FLOW_PAUSE_KEY_PREFIX):
            continue
        try:
            request_resume(run.id)
        except FlowRunControlError as e:  # resumed meanwhile by someone else: fine
            logger.info("Not resuming %s: %s", run.name, e)
            continue
        resumed.append(run.name)
    print(f"Resumed {len(resumed)} paused stud{'y' if len(resumed) == 1 else 'ies'}: {', '.join(resumed) or 'none'}.")
    return resumed
