"""How one execution of a study's flow run reads and changes that run: the seam between the
study's decisions (`StudyRun`, its suspension and pause announcement, the pause watcher, the
artifacts) and Prefect.

`PrefectRunLink` goes through the Prefect API, as every study run does. `InMemoryRunLink`
keeps the run's states, events, artifacts and scheduled resumes in memory, so that what a
study run decides can be tested without a server (`tests/unit/test_study_run_logic.py`).
"""

from __future__ import annotations

import threading
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from typing import Any, Iterator, NoReturn, Protocol
from uuid import UUID, uuid4

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import ArtifactCreate, ArtifactUpdate
from prefect.client.schemas.objects import Artifact, FlowRun
from prefect.exceptions import Pause
from prefect.flow_runs import suspend_flow_run
from prefect.states import Running, State, Suspended

from prefect_intermission.control.run_control import read_flow_run
from prefect_intermission.control.timed_resume import TimedResume, cancel_pending_resumes, schedule_resume
from prefect_intermission.errors import IntermissionError
from prefect_intermission.pausing.flow_run_poll import shared_poll
from prefect_intermission.pausing.watcher import RunReadings
from prefect_intermission.reporting.events import emit_study_event


class RunLink(Protocol):
    """What an execution of a study's flow run does to that run, and nothing else."""

    flow_run: FlowRun

    def read(self) -> FlowRun:
        """The run as its server has it now."""
        ...

    def watch(self, every: float) -> RunReadings:
        """Readings of the run, one about every `every` seconds."""
        ...

    def set_state(self, state: State) -> None:
        """Set the run's state, whatever it is now."""
        ...

    def suspend(self, pause_key: str) -> NoReturn:
        """Suspend the run, without a timeout; raises `prefect.exceptions.Pause` once it is."""
        ...

    def emit(self, what: str, study_name: str, payload: dict[str, Any]) -> None:
        """Emit the event `intermission.study.<what>` about the study, related to the run."""
        ...

    def artifacts(self) -> AbstractContextManager[Any]:
        """A client for the run's artifacts (`create_artifact`, `update_artifact`, `read_artifacts`)."""
        ...

    def schedule_resume(self, at: datetime, pause_key: str) -> TimedResume:
        """Have the suspended run resume by itself at `at` (Resume still resumes it sooner)."""
        ...

    def cancel_pending_resumes(self) -> int:
        """Forget the resumes scheduled for the run; how many there were."""
        ...


class PrefectRunLink:
    """The run through the Prefect API, from inside its own execution."""

    def __init__(self, flow_run: FlowRun) -> None:
        self.flow_run = flow_run

    def read(self) -> FlowRun:
        return read_flow_run(self.flow_run.id)

    def watch(self, every: float) -> RunReadings:
        return shared_poll().watch(self.flow_run.id, every=every)

    def set_state(self, state: State) -> None:
        with get_client(sync_client=True) as client:
            client.set_flow_run_state(self.flow_run.id, state, force=True)

    def suspend(self, pause_key: str) -> NoReturn:
        suspend_flow_run(timeout=None, key=pause_key)
        raise IntermissionError(f"Flow run {self.flow_run.id} could not be suspended; it is still running.")

    def emit(self, what: str, study_name: str, payload: dict[str, Any]) -> None:
        emit_study_event(what, study_name, self.flow_run.id, payload)

    def artifacts(self) -> AbstractContextManager[Any]:
        return get_client(sync_client=True)

    def schedule_resume(self, at: datetime, pause_key: str) -> TimedResume:
        return schedule_resume(self.flow_run, at, pause_key=pause_key)

    def cancel_pending_resumes(self) -> int:
        return cancel_pending_resumes(self.flow_run.id)


class InMemoryRunLink:
    """A flow run kept in memory: its states, the events and artifacts sent about it, and
    the resumes scheduled for it. Set a state (`set_state(Paused(...))`) to act as the UI does.

    Args:
        deployed: Whether the run belongs to a deployment (only then can it be suspended).
    """

    def __init__(self, *, deployed: bool = True, name: str = "in-memory") -> None:
        self.flow_run = FlowRun(
            flow_id=uuid4(), name=name, deployment_id=uuid4() if deployed else None, state=Running()
        )
        self.states: list[State] = [self.flow_run.state]
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.created_artifacts: list[Artifact] = []
        self.scheduled_resumes: list[TimedResume] = []
        self._changed = threading.Condition()

    @property
    def state(self) -> State:
        """The run's state now."""
        with self._changed:
            return self.states[-1]

    def read(self) -> FlowRun:
        return self.flow_run.model_copy(update={"state": self.state})

    def watch(self, every: float) -> RunReadings:
        return _Readings(self, every)

    def set_state(self, state: State) -> None:
        with self._changed:
            self.states.append(state)
            self._changed.notify_all()

    def suspend(self, pause_key: str) -> NoReturn:
        suspended = Suspended(pause_key=pause_key)
        self.set_state(suspended)
        raise Pause("Suspended (in memory).", state=suspended)

    def emit(self, what: str, study_name: str, payload: dict[str, Any]) -> None:
        self.events.append((what, payload))

    @contextmanager
    def artifacts(self) -> Iterator[_InMemoryArtifacts]:
        yield _InMemoryArtifacts(self.created_artifacts)

    def schedule_resume(self, at: datetime, pause_key: str) -> TimedResume:
        timed = TimedResume(at, uuid4())
        self.scheduled_resumes = [timed]  # the one resume of the run's pause, as Prefect's replaces
        return timed

    def cancel_pending_resumes(self) -> int:
        cancelled, self.scheduled_resumes = len(self.scheduled_resumes), []
        return cancelled

    def artifact_data(self, kind: str) -> list[Any]:
        """The data of every artifact of `kind` ("progress", "trials", "pause"), oldest first."""
        return [a.data for a in self.created_artifacts if (a.key or "").endswith(f"-{kind}")]


class _Readings:
    """The run's state read from memory: at once after a change, else once per interval."""

    def __init__(self, link: InMemoryRunLink, every: float) -> None:
        self._link, self._every = link, every
        self._seen = len(link.states)
        self._closed = False

    def next(self, timeout: float) -> FlowRun | None:
        with self._link._changed:
            self._link._changed.wait_for(
                lambda: len(self._link.states) > self._seen or self._closed, min(timeout, self._every)
            )
            self._seen = len(self._link.states)
        return None if self._closed else self._link.read()

    def close(self) -> None:
        with self._link._changed:
            self._closed = True
            self._link._changed.notify_all()

    def __enter__(self) -> _Readings:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class _InMemoryArtifacts:
    """The three artifact calls `ArtifactReporter` makes, on a list."""

    def __init__(self, created: list[Artifact]) -> None:
        self._created = created

    def create_artifact(self, artifact: ArtifactCreate) -> Artifact:
        made = Artifact(**artifact.model_dump(), id=uuid4())
        self._created.append(made)
        return made

    def update_artifact(self, artifact_id: UUID, artifact: ArtifactUpdate) -> None:
        for i, existing in enumerate(self._created):
            if existing.id == artifact_id:
                self._created[i] = existing.model_copy(update=artifact.model_dump(exclude_unset=True))

    def read_artifacts(self, *, artifact_filter: Any, sort: Any = None, limit: int | None = None) -> list[Artifact]:
        keys = artifact_filter.key.any_ if artifact_filter.key else None
        found = [a for a in reversed(self._created) if keys is None or a.key in keys]
        return found[:limit]
