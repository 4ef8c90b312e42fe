"""A study's progress as Prefect artifacts on its flow run: what a user sees on the run's page.

- `<study>-progress`: finished trials against `n_trials`, as a progress bar;
- `<study>-trials`: a table of trials (number, state, epoch, last and best metric, parameters);
- `<study>-pause`: a markdown summary of the last pause.

Updates come from epoch boundaries, but are sent by a background thread, at most once a
second, so training never waits for the API.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from types import TracebackType
from typing import Any
from uuid import UUID

from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.actions import ArtifactCreate, ArtifactUpdate

from prefect_intermission._threads import ContextThread
from prefect_intermission.reporting.progress import StudyProgress

logger = logging.getLogger(__name__)


def artifact_key(study_name: str, kind: str) -> str:
    """The artifact key of a study (keys allow lowercase letters, digits and dashes)."""
    slug = re.sub(r"[^a-z0-9-]+", "-", study_name.lower()).strip("-") or "study"
    return f"{slug}-{kind}"


def trials_table(progress: StudyProgress) -> list[dict[str, Any]]:
    """The rows of the trials table."""
    return [
        {
            "trial": t.number,
            "state": t.state,
            "epoch": f"{t.epoch + 1}/{progress.max_epochs}",
            "last_metric": t.last_metric,
            "best_metric": t.best_metric,
            "params": json.dumps(t.params, sort_keys=True),
        }
        for t in progress.trials()
    ]


class ArtifactReporter:
    """Keeps a study's progress and trials artifacts up to date from a background thread."""

    def __init__(self, flow_run_id: UUID, progress: StudyProgress, *, interval: float = 1.0) -> None:
        self.flow_run_id = flow_run_id
        self.progress = progress
        self.interval = interval
        self._changed = threading.Event()
        self._progress_artifact: UUID | None = None
        self._thread = ContextThread(self._run, name="intermission-artifacts", join_timeout=10)
        progress.add_listener(lambda _: self._changed.set())

    def __enter__(self) -> ArtifactReporter:
        self._changed.set()
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._thread.stop(wake=self._changed.set)

    def publish_pause_summary(self, markdown: str) -> None:
        """Publish the pause summary now (the pause waits for it: it is what the user opens)."""
        try:
            with get_client(sync_client=True) as client:
                self._publish(client)
                self._create(client, "pause", "markdown", markdown, "Why and where the study paused")
        except Exception:
            logger.warning("Could not publish the pause summary artifact.", exc_info=True)

    def _run(self) -> None:
        with get_client(sync_client=True) as client:
            while not self._thread.stopping.is_set():
                self._changed.wait()
                self._changed.clear()
                try:
                    self._publish(client)
                except Exception:  # the API being away must not stop training
                    logger.debug("Could not update the study's artifacts.", exc_info=True)
                self._thread.stopping.wait(self.interval)
            try:
                self._publish(client)
            except Exception:
                logger.debug("Could not update the study's artifacts.", exc_info=True)

    def _publish(self, client: SyncPrefectClient) -> None:
        progress = self.progress
        fraction = round(100 * min(progress.finished / progress.n_trials, 1.0), 1)
        if self._progress_artifact is None:
            self._progress_artifact = self._create(
                client, "progress", "progress", fraction,
                f"Finished trials of study {progress.study_name!r} out of {progress.n_trials}",
            )
        else:
            client.update_artifact(self._progress_artifact, ArtifactUpdate(data=fraction))
        self._create(
            client, "trials", "table", json.dumps(trials_table(progress)),
            f"Trials of study {progress.study_name!r} trained by this run",
        )

    def _create(self, client: SyncPrefectClient, kind: str, type_: str, data: Any, description: str) -> UUID:
        artifact = client.create_artifact(
            ArtifactCreate(
                key=artifact_key(self.progress.study_name, kind),
                type=type_,
                data=data,
                description=description,
                flow_run_id=self.flow_run_id,
            )
        )
        return artifact.id
