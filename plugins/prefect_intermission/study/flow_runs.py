"""Finding the flow runs of studies on the Prefect server, and what a run says about its study."""

from __future__ import annotations

from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterName
from prefect.client.schemas.objects import FlowRun
from prefect.client.schemas.sorting import FlowRunSort
from prefect.exceptions import ObjectNotFound

from prefect_intermission.errors import IntermissionError
from prefect_intermission.study.config import DEFAULT_STORAGE, StudyConfig

#: The study flow's name on the Prefect server.
STUDY_FLOW_NAME = "pausable-study"
#: The name of the flow that trains one trial per flow run (`trial_deployment`).
TRIAL_FLOW_NAME = "pausable-trial"


class StatusError(IntermissionError):
    """The study or flow run asked about cannot be found."""


def read_study_runs(
    flow_run_filter: FlowRunFilter | None = None, *, sort: FlowRunSort = FlowRunSort.EXPECTED_START_TIME_DESC
) -> list[FlowRun]:
    """The study flow's runs that match `flow_run_filter`, newest first."""
    runs: list[FlowRun] = []
    with get_client(sync_client=True) as client:
        while True:
            page = client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=[STUDY_FLOW_NAME])),
                flow_run_filter=flow_run_filter,
                sort=sort,
                limit=200,
                offset=len(runs),
            )
            runs.extend(page)
            if len(page) < 200:
                return runs


def study_name_of(run: FlowRun) -> str:
    """The study a `pausable-study` flow run runs."""
    return str(run.parameters.get("study_name") or run.name)


def latest_runs(target: str | None = None) -> list[FlowRun]:
    """The latest flow run of every study (or of the one named, or the run with that id).

    Raises:
        StatusError: Nothing on the Prefect server matches `target`.
    """
    if target is not None:
        try:
            flow_run_id = UUID(target)
        except ValueError:
            flow_run_id = None
        if flow_run_id is not None:
            with get_client(sync_client=True) as client:
                try:
                    return [client.read_flow_run(flow_run_id)]
                except ObjectNotFound as e:
                    raise StatusError(
                        f"No flow run {flow_run_id} on the Prefect server at this PREFECT_API_URL; "
                        "check the id, or give the study's name instead."
                    ) from e
        runs = [r for r in read_study_runs(FlowRunFilter(name=FlowRunFilterName(any_=[target])))
                if study_name_of(r) == target]
        if not runs:
            runs = [r for r in read_study_runs() if study_name_of(r) == target]
        if not runs:
            raise StatusError(
                f"No {STUDY_FLOW_NAME!r} flow run of a study named {target!r} on the Prefect server at "
                "this PREFECT_API_URL; `intermission status` without a name lists the studies it knows."
            )
        return runs[:1]
    latest: dict[str, FlowRun] = {}
    for run in read_study_runs():
        latest.setdefault(study_name_of(run), run)
    return sorted(latest.values(), key=study_name_of)


def study_storage(study_name: str) -> str:
    """The storage URL of a study's latest flow run (the flow's default when the server has none)."""
    try:
        run = latest_runs(study_name)[0]
    except StatusError:
        return DEFAULT_STORAGE
    return study_config_of(run).execution.storage


def study_config_of(run: FlowRun) -> StudyConfig:
    """The configuration a study flow run was started with (defaults filled in)."""
    return StudyConfig.from_run_parameters({"study_name": study_name_of(run), "objective": "", **run.parameters})
