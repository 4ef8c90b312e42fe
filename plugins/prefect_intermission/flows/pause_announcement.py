"""A pause made known, once for every way a study pauses (suspended, handed back to its
supervisor, stopped at once, waiting for its pause file): recorded in the study, summarised
on the run's page, emitted as an event, and sent to the policy's notification URLs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from prefect_intermission.blocks.pause_policy import PausePolicy
from prefect_intermission.flows.pause_summary import pause_summary
from prefect_intermission.flows.run_link import RunLink
from prefect_intermission.reporting.artifacts import ArtifactReporter
from prefect_intermission.reporting.notify import notify
from prefect_intermission.reporting.resources import measure_resources
from prefect_intermission.study.config import StudyConfig
from prefect_intermission.study.scheduler import ScheduleResult
from prefect_intermission.study.state import StudyState
from prefect_intermission.training.store import CheckpointStore


@dataclass(frozen=True)
class Announced:
    """A pause recorded and published: its entry in the study's pause history and its summary."""

    entry: dict[str, Any]
    summary: str
    policy: PausePolicy | None
    study_name: str

    def notify(self, message: str | None = None) -> None:
        """Send "Study X paused" with the summary (or `message`) to the policy's URLs."""
        notify(self.policy, f"Study {self.study_name} paused", message or self.summary)


@dataclass(frozen=True)
class PauseAnnouncer:
    """Records a study's pauses and makes them known, for one execution of its run."""

    config: StudyConfig
    state: StudyState
    store: CheckpointStore
    link: RunLink
    policy: PausePolicy | None
    reporter: ArtifactReporter

    def record(self, reason: str, result: ScheduleResult) -> dict[str, Any]:
        """Store the sampler and a pause entry (why, which trials, resources) in the study."""
        with self.state.sampler_lock:
            self.state.save_sampler()
        return self.state.record_pause(
            flow_run_id=str(self.link.flow_run.id), reason=reason, trials=result.paused,
            resources=measure_resources(),
        )

    def announce(self, entry: dict[str, Any], *, resume_at: datetime | None, how_to_resume: str | None) -> Announced:
        """Publish the recorded pause `entry`'s summary as the run's pause artifact and emit its
        event; the notification is the caller's to send (`Announced.notify`) once the pause is
        complete. Record it first (`record`), before anything that may fail or take long."""
        summary = pause_summary(
            self.state, entry, n_trials=self.config.budget.n_trials, max_epochs=self.config.training.max_epochs,
            checkpoints=self.store.study_folder(self.config.study_name), flow_run_id=self.link.flow_run.id,
            resume_at=resume_at, how_to_resume=how_to_resume,
            zone=self.policy.timezone if self.policy is not None else "UTC",
        )
        self.reporter.publish_pause_summary(summary)
        self.link.emit(
            "paused", self.config.study_name,
            {"reason": entry["reason"], "trials": entry["trials"],
             "resume_at": resume_at.isoformat() if resume_at else None},
        )
        return Announced(entry, summary, self.policy, self.config.study_name)
