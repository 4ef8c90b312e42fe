"""A study's progress as Prefect artifacts on its flow run: what a user sees on the run's page.

- `<study>-progress`: finished trials against `n_trials`, as a progress bar: one artifact per
  flow run, updated in place across the run's executions (a resumed run finds it again);
- `<study>-trials`: a table of trials (number, state, epoch, last and best metric, parameters),
  published only when it changed meaningfully: at a pause, when the study completes (or a
  trial fails), and otherwise at most every `TABLE_EVERY_SECONDS` while training;
- `<study>-pause`: a markdown summary of each pause.

Table and markdown artifacts cannot be updated in place: each publication adds a card (the
key groups them), hence the few publications. Every card's description says what it is and
when it was made. Progress updates come from epoch boundaries, but are sent by a background
thread, at most once a second, so training never waits for the API.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime, timezone
from types import TracebackType
from typing import Any
from uuid import UUID

from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.actions import ArtifactCreate, ArtifactUpdate
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey
from prefect.client.schemas.sorting import ArtifactSort

from prefect_intermission._threads import ContextThread
from prefect_intermission._times import shown_time
from prefect_intermission.reporting.progress import StudyProgress

logger = logging.getLogger(__name__)

TABLE_EVERY_SECONDS = 300.0
"""While training, the trials table is published at most this often (pauses and the end excepted)."""


def artifact_key(study_name: str, kind: str) -> str:
    """The artifact key of a study (keys allow lowercase letters, digits and dashes)."""
    slug = re.sub(r"[^a-z0-9-]+", "-", study_name.lower()).strip("-") or "study"
    return f"{slug}-{kind}"


def trials_table(progress: StudyProgress, earlier: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """The rows of the trials table, by trial number: every trial of `progress`, and the rows of
    `earlier` (an earlier execution's table) for trials this execution has not trained."""
    rows = {
        t.number: {
            "trial": t.number,
            "state": t.state,
            "epoch": f"{t.epoch + 1}/{progress.max_epochs}",
            "last_metric": t.last_metric,
            "best_metric": t.best_metric,
            "params": json.dumps(t.params, sort_keys=True),
        }
        for t in progress.trials()
    }
    for row in earlier or []:
        if isinstance(row, dict) and isinstance(row.get("trial"), int):
            rows.setdefault(row["trial"], row)
    return [rows[n] for n in sorted(rows)]


def _now() -> str:
    """Now, in UTC: the run's page is read from anywhere."""
    return shown_time(datetime.now(timezone.utc), "UTC")


class ArtifactReporter:
    """Keeps a study's progress artifact up to date and publishes its trials table when it matters.

    One reporter serves one execution of the flow run; a resumed run's new execution finds
    the run's progress artifact and latest trials table through the API and carries on.
    `open_client` opens the client it publishes with (Prefect's, unless told otherwise).
    """

    def __init__(
        self,
        flow_run_id: UUID,
        progress: StudyProgress,
        *,
        interval: float = 1.0,
        table_every: float = TABLE_EVERY_SECONDS,
        open_client: Callable[[], AbstractContextManager[Any]] = lambda: get_client(sync_client=True),
    ) -> None:
        self.flow_run_id = flow_run_id
        self._open_client = open_client
        self.progress = progress
        self.interval = interval
        self.table_every = table_every
        self._changed = threading.Event()
        self._lock = threading.RLock()  # the background thread and a pause publish in turn
        self._loaded = False  # the run's earlier artifacts were looked up
        self._progress_artifact: UUID | None = None
        self._progress_described = False
        self._earlier_rows: list[dict[str, Any]] = []  # the run's latest table before this execution
        self._table_dirty = False  # the trials changed since the table was last published
        self._table_at = time.monotonic()  # when the table was last published (or this execution began)
        self._thread = ContextThread(self._run, name="intermission-artifacts", join_timeout=10)
        progress.add_listener(self._on_change)

    @property
    def study_name(self) -> str:
        return self.progress.study_name

    def _on_change(self, _: StudyProgress) -> None:
        self._table_dirty = True
        self._changed.set()

    def __enter__(self) -> ArtifactReporter:
        self._table_at = time.monotonic()
        self._changed.set()
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._thread.stop(wake=self._changed.set)
        if exc_type is not None:  # a second Ctrl+C or a crash: leave at once (a pause publishes its own)
            return
        if self.progress.finished >= self.progress.n_trials:
            when = f"when the study completed, {_now()}"
        elif failed := [t.number for t in self.progress.trials() if t.state == "failed"]:
            when = f"when trial {failed[0]} failed, {_now()}"
        else:
            return  # paused: `publish_pause_summary` publishes the table with the pause's summary
        try:
            with self._open_client() as client:
                self._publish_table(client, when)
        except Exception:
            logger.warning("Could not publish the study's trials table.", exc_info=True)

    def publish_pause_summary(self, markdown: str) -> None:
        """Publish the pause summary now, with the trials table if it changed since it was last
        published (the pause waits for them: they are what the user opens)."""
        try:
            with self._open_client() as client:
                with self._lock:
                    self._publish_progress(client)
                    self._publish_table(client, f"at the pause of {_now()}")
                self._create(
                    client, "pause", "markdown", markdown,
                    f"Why and where study {self.study_name!r} paused, and how to resume it "
                    f"(the pause of {_now()})",
                )
        except Exception:
            logger.warning("Could not publish the pause summary artifact.", exc_info=True)

    def _run(self) -> None:
        with self._open_client() as client:
            while not self._thread.stopping.is_set():
                self._changed.wait()
                self._changed.clear()
                self._update(client, periodic=True)
                self._thread.stopping.wait(self.interval)
            self._update(client, periodic=False)

    def _update(self, client: SyncPrefectClient, *, periodic: bool) -> None:
        try:  # the API being away must not stop training
            with self._lock:
                self._publish_progress(client)
                if periodic and time.monotonic() - self._table_at >= self.table_every:
                    self._publish_table(client, f"at {_now()} (every {self.table_every / 60:g} minutes while training)")
        except Exception:
            logger.debug("Could not update the study's artifacts.", exc_info=True)

    def _load(self, client: SyncPrefectClient) -> None:
        """Find the run's progress artifact and latest trials table, left by earlier executions."""
        if self._loaded:
            return
        found = {}
        for kind in ("progress", "trials"):
            artifacts = client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    key=ArtifactFilterKey(any_=[artifact_key(self.study_name, kind)]),
                    flow_run_id=ArtifactFilterFlowRunId(any_=[self.flow_run_id]),
                ),
                sort=ArtifactSort.CREATED_DESC,
                limit=1,
            )
            found[kind] = artifacts[0] if artifacts else None
        if found["progress"] is not None:
            self._progress_artifact = found["progress"].id
        if (table := found["trials"]) is not None:
            try:
                rows = json.loads(table.data) if isinstance(table.data, str) else table.data
            except ValueError:
                rows = []
            self._earlier_rows = rows if isinstance(rows, list) else []
        self._loaded = True

    def _publish_progress(self, client: SyncPrefectClient) -> None:
        """Update the run's progress artifact in place (create it the first time)."""
        with self._lock:
            self._load(client)
            progress = self.progress
            fraction = round(100 * min(progress.finished / progress.n_trials, 1.0), 1)
            description = (
                f"Finished trials of study {progress.study_name!r} out of {progress.n_trials} "
                "(updated as trials finish)"
            )
            if self._progress_artifact is None:
                self._progress_artifact = self._create(client, "progress", "progress", fraction, description)
                self._progress_described = True
            elif not self._progress_described:
                client.update_artifact(self._progress_artifact, ArtifactUpdate(data=fraction, description=description))
                self._progress_described = True
            else:
                client.update_artifact(self._progress_artifact, ArtifactUpdate(data=fraction))

    def _publish_table(self, client: SyncPrefectClient, when: str) -> None:
        """Publish the trials table if it changed since it was last published."""
        with self._lock:
            self._load(client)
            if not self._table_dirty:
                return
            self._table_dirty = False
            try:
                self._create(
                    client, "trials", "table", json.dumps(trials_table(self.progress, self._earlier_rows)),
                    f"Trials of study {self.study_name!r} in this flow run, {when}",
                )
            except BaseException:
                self._table_dirty = True
                raise
            self._table_at = time.monotonic()

    def _create(self, client: SyncPrefectClient, kind: str, type_: str, data: Any, description: str) -> UUID:
        artifact = client.create_artifact(
            ArtifactCreate(
                key=artifact_key(self.study_name, kind),
                type=type_,
                data=data,
                description=description,
                flow_run_id=self.flow_run_id,
            )
        )
        return artifact.id
