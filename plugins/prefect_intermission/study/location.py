"""Where a study lives, recorded with its flow run, so that a re-execution elsewhere stops.

A resumed run executes again from the top, possibly on another machine or in a new
container. Relative locations (the defaults) then resolve against that working
directory, where opening the study would create a new, empty one and train it from
scratch. So the first execution of a flow run records where its study is, and every
later execution of the same run checks, before the study is opened, that it finds that
very study there.

The record is kept as labels of the flow run (`intermission.storage`,
`intermission.checkpoints`, `intermission.study`). Labels belong to the run: they are
deleted with it, the API returns them with it (`prefect flow-run inspect`), and a
later execution reads them with the run itself. An artifact would add a card to the
run's page, and a Prefect Variable is a global name that outlives the run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from uuid import UUID

import fsspec.core
from fsspec.implementations.local import LocalFileSystem
from fsspec.utils import get_protocol
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun
from prefect.exceptions import ObjectNotFound
from sqlalchemy.engine import make_url

from prefect_intermission._logging import run_logger
from prefect_intermission._redaction import hide_password, redact_arguments
from prefect_intermission.errors import ConfigurationError
from prefect_intermission.study.config import StudyConfig
from prefect_intermission.study.state import missing_sqlite_file, open_storage, study_uid

STORAGE_LABEL = "intermission.storage"
CHECKPOINTS_LABEL = "intermission.checkpoints"
STUDY_LABEL = "intermission.study"
#: The work pool type whose flow runs start on the worker's own machine.
PROCESS_POOL = "process"
GUIDE = "the guide 'Docker and Kubernetes work pools', docs/guides/work-pools.md"


@dataclass(frozen=True)
class StudyLocation:
    """Where a study's storage and checkpoints are: absolute, with any password hidden."""

    storage: str
    checkpoints: str

    @classmethod
    def of(cls, config: StudyConfig) -> StudyLocation:
        """The places `config` names, as this process resolves them."""
        return cls(hide_password(_absolute_storage(config.execution.storage)), _absolute_checkpoints(config.checkpointing.checkpoints))

    def __str__(self) -> str:
        return f"storage {self.storage} and checkpoints {self.checkpoints}"


def record_location(flow_run_id: UUID, config: StudyConfig, uid: str) -> None:
    """Record with the flow run where its study is and which study it is (`StudyState.uid`)."""
    location = StudyLocation.of(config)
    with get_client(sync_client=True) as client:
        client.update_flow_run_labels(
            flow_run_id,
            {STORAGE_LABEL: location.storage, CHECKPOINTS_LABEL: location.checkpoints, STUDY_LABEL: uid},
        )


def check_location(config: StudyConfig, flow_run: FlowRun) -> bool:
    """On a later execution of `flow_run`, refuse unless its study is where the first one found it.

    Nothing is created or changed: a missing SQLite file is not opened. Returns whether
    this is the first execution (nothing recorded yet), which then records the location.

    Raises:
        ConfigurationError: naming both places and how to reach the study.
    """
    labels = flow_run.labels or {}
    if not {STORAGE_LABEL, CHECKPOINTS_LABEL, STUDY_LABEL} <= labels.keys():
        return True
    first = StudyLocation(str(labels[STORAGE_LABEL]), str(labels[CHECKPOINTS_LABEL]))
    uid = str(labels[STUDY_LABEL])
    here = StudyLocation.of(config)
    problem = _why_not_here(config, first, here, uid)
    if problem is None:
        return False
    raise ConfigurationError(
        f"Flow run {flow_run.id} cannot continue study {config.study_name!r} here: {problem}. "
        f"Its first execution ran the study with {first}; this execution, in the working "
        f"directory {os.getcwd()}, would use {here}. Nothing was created or changed. Relative "
        "locations (the defaults) resolve against the working directory of whichever machine or "
        "container runs the flow. To continue the study, start a new run of it with "
        f"storage={first.storage!r} and checkpoints={first.checkpoints!r} where those are reachable "
        "(that machine, or a volume mounted at that path). For a study that moves between machines, "
        f"use locations every worker reaches, e.g. PostgreSQL and s3:// (see {GUIDE})."
    )


def warn_if_machine_local(config: StudyConfig, flow_run: FlowRun) -> None:
    """Warn on the run's log when its work pool is not a `process` pool, whose runs may start
    in a new container or on another machine, and the study's locations are relative."""
    relative = _relative_locations(config)
    if not flow_run.work_pool_name or not relative:
        return
    with get_client(sync_client=True) as client:
        try:
            pool = client.read_work_pool(flow_run.work_pool_name)
        except ObjectNotFound:
            return
    if pool.type == PROCESS_POOL:
        return
    run_logger(__name__).warning(
        "Work pool %r is a %r pool, so a resumed run may start in a new container or on another "
        "machine, where the study's %s, relative to the working directory, are not there: that "
        "run would stop without training. Give the deployment locations every run reaches: storage "
        "postgresql+psycopg://user@host/db and checkpoints s3://bucket/prefix, or absolute paths on "
        "a volume that every run mounts at the same path (see %s).",
        flow_run.work_pool_name, pool.type, " and ".join(relative), GUIDE,
    )


def _why_not_here(config: StudyConfig, first: StudyLocation, here: StudyLocation, uid: str) -> str | None:
    """What keeps this execution from finding the recorded study, or None when it is here."""
    if here != first:
        return "its locations resolve to other places than at its first execution"
    if (missing := missing_sqlite_file(config.execution.storage)) is not None:
        return f"the SQLite file {missing} does not exist"
    storage = open_storage(config.execution.storage)
    try:
        found = study_uid(storage, storage.get_study_id_from_name(config.study_name))
    except KeyError:
        return f"the storage holds no study named {config.study_name!r}"
    finally:
        storage.engine.dispose()
    if found != uid:
        return (
            f"the study named {config.study_name!r} there is another one than this run started "
            "(it was created again since)"
        )
    return None


def _absolute_storage(url: str) -> str:
    """A storage URL with a relative SQLite path made absolute."""
    try:
        parsed = make_url(url)
    except Exception:
        return url  # open_storage explains what a storage URL must look like
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:" or os.path.isabs(database):
        return url
    return parsed.set(database=os.path.abspath(database)).render_as_string(hide_password=False)


def _absolute_checkpoints(url: str) -> str:
    """A checkpoint location as an absolute folder, or its URL with any password hidden."""
    if get_protocol(url) in LocalFileSystem.protocol:
        return str(fsspec.core.strip_protocol(url))
    return redact_arguments([url])[0]


def _relative_locations(config: StudyConfig) -> list[str]:
    """The study's locations that depend on the working directory, as a log line names them."""
    relative = []
    if _absolute_storage(config.execution.storage) != config.execution.storage:
        relative.append(f"storage {config.execution.storage}")
    local = get_protocol(config.checkpointing.checkpoints) in LocalFileSystem.protocol
    if local and not os.path.isabs(config.checkpointing.checkpoints.split("://", 1)[-1]):
        relative.append(f"checkpoints {config.checkpointing.checkpoints}")
    return relative
