"""Where each study stands: built from its flow run, its Optuna storage and its checkpoints.

`study_statuses()` only reads: the Prefect API for the study's latest
`pausable-study` flow run, the study's Optuna storage (trials, pause history,
resumptions, epoch times) and lease, and the manifests of its checkpoints. The
stored sampler is never unpickled. `intermission status` renders the result.
"""

from __future__ import annotations

import statistics
import time
from datetime import datetime, timezone
from typing import Any

from prefect.client.schemas.objects import FlowRun

from prefect_intermission.cli._status_model import StudyStatus, TrialProgress
from prefect_intermission.cli._study_facts import (
    TrialFacts,
    checkpoint_location,
    hide_password,
    lease_state,
    open_study,
    read_checkpoints,
    read_trials,
)
from prefect_intermission.control.abandonment import ABANDONED_STATE_NAME
from prefect_intermission.control.timed_resume import PAUSED_UNTIL, pending_resume
from prefect_intermission.pausing.run_states import FLOW_PAUSE_KEY_PREFIX
from prefect_intermission.reporting.links import flow_run_url
from prefect_intermission.study.config import StudyConfig
from prefect_intermission.study.flow_runs import (
    StatusError,
    latest_runs,
    study_config_of,
)
from prefect_intermission.study.results import best_value
from prefect_intermission.study.state import pause_history, study_seed

__all__ = [
    "ABANDONED_AFTER_SECONDS",
    "StatusError",
    "StudyStatus",
    "TrialProgress",
    "build_status",
    "hide_password",
    "study_statuses",
]

#: A run Prefect has called running (or pausing) this long without anyone holding the study's
#: lease is abandoned (an expired lease says so at once).
ABANDONED_AFTER_SECONDS = 120.0


def _iso(value: datetime | None) -> str | None:
    """`value` in UTC as ISO 8601 to the second; one without an offset is local time (Optuna's)."""
    return value.astimezone(timezone.utc).isoformat(timespec="seconds") if value is not None else None


def _state(run: FlowRun, pauses: list[dict[str, Any]], lease: str, renewed_at: float | None) -> str:
    """The study's state in the words of the documentation (docs/guides/status.md), from its flow run and its lease.

    `lease` is "live" (an execution renews it), "expired" (its execution stopped renewing
    it: killed or hung), "none" (nobody holds it) or "unknown" (the storage is unreadable).
    """
    state = run.state
    if state is None:
        return "scheduled"
    kind = state.type.value
    since = state.timestamp.timestamp()
    stale = time.time() - since > ABANDONED_AFTER_SECONDS
    # Prefect says a process drives the study, but none does: it died or hangs. A lease
    # that expired before a Running state began is an earlier execution's: the new one
    # takes it over as it starts.
    if kind == "RUNNING":
        fresh = renewed_at is not None and renewed_at >= since
        gone = (lease == "expired" and fresh) or (lease in ("none", "expired") and stale)
    else:
        gone = lease == "expired" or (lease == "none" and stale)
    if kind == "PAUSED":
        if (state.state_details.pause_key or "").startswith(FLOW_PAUSE_KEY_PREFIX):
            return "paused"
        return "abandoned" if gone else "pausing"
    if kind == "RUNNING":
        return "abandoned" if gone else "running"
    if kind == "SCHEDULED" and state.name == PAUSED_UNTIL:
        return "paused"
    if kind in ("SCHEDULED", "PENDING"):
        resumed = state.name == "Resuming" or run.run_count > 0 or bool(pauses)
        return "scheduled to resume" if resumed else "scheduled"
    if kind == "COMPLETED":
        return "paused" if state.name == "Paused" else "completed"
    if kind in ("FAILED", "CRASHED"):
        return "failed"
    if kind in ("CANCELLED", "CANCELLING"):
        return "abandoned" if state.name == ABANDONED_STATE_NAME else "cancelled"
    return kind.lower()


def _epochs_left(run: FlowRun, config: StudyConfig, trials: TrialFacts) -> int:
    """Epochs still to train: the unfinished trials' rest and every trial not started (0 once done)."""
    if run.state is not None and run.state.is_completed() and run.state.name != "Paused":
        return 0
    max_epochs = config.training.max_epochs
    not_started = max(config.budget.n_trials - trials.counts["finished"] - len(trials.unfinished), 0)
    return sum(max(max_epochs - u.epochs_done, 0) for u in trials.unfinished) + not_started * max_epochs


def _resumes_at(run: FlowRun) -> str | None:
    """When the study resumes by itself (a paused run's scheduled resume, or a scheduled run's
    start), else None."""
    timed = pending_resume(run)
    return _iso(timed.at) if timed is not None else None


def build_status(run: FlowRun, *, storage: str | None = None, now: float | None = None) -> StudyStatus:
    """The status of the study a `pausable-study` flow run runs.

    Args:
        run: The study's flow run (its parameters say where the study is stored).
        storage: Read the study from this SQLAlchemy URL instead of the run's `storage`.
        now: The current time (epoch seconds), for the lease check.
    """
    config = study_config_of(run)
    url = storage or config.execution.storage
    problems: list[str] = []
    study, held = open_study(url, config.study_name, problems)
    lease = lease_state(study, held, now)
    trials = read_trials(study, config.training.max_epochs, lease_live=lease == "live", now=now)
    best = trials.best
    epochs_left = _epochs_left(run, config, trials)
    mean_epoch = statistics.fmean(trials.epoch_seconds) if trials.epoch_seconds else None
    pauses = pause_history(study) if study is not None else []
    location, files, size = read_checkpoints(
        checkpoint_location(config, problems), config.study_name, trials.numbers, problems
    )
    return StudyStatus(
        study_name=config.study_name,
        state=_state(run, pauses, lease, held[1] if held else None),
        prefect_state=run.state.name if run.state else None,
        flow_run_id=str(run.id),
        ui_url=flow_run_url(run.id),
        storage=hide_password(url),
        n_trials=config.budget.n_trials,
        max_epochs=config.training.max_epochs,
        seed=study_seed(study) if study is not None else None,
        trials=trials.counts,
        unfinished=trials.unfinished,
        best_value=best_value(best, study.direction) if best is not None and study is not None else None,
        best_params=dict(best.params) if best is not None else None,
        best_trial=best.number if best is not None else None,
        pareto_front=trials.pareto_front,
        started_at=_iso(run.start_time or trials.first_start),
        training_seconds=round(sum(trials.epoch_seconds) + trials.in_progress, 3),
        training_in_progress_seconds=round(trials.in_progress, 3),
        measured_epochs=len(trials.epoch_seconds),
        mean_epoch_seconds=round(mean_epoch, 4) if mean_epoch is not None else None,
        epochs_left=epochs_left,
        estimated_remaining_seconds=(
            round(mean_epoch * epochs_left, 1) if mean_epoch is not None else None
        ),
        last_pause=pauses[-1] if pauses else None,
        pauses=pauses,
        resumptions=trials.resumptions,
        resumes_at=_resumes_at(run),
        checkpoints=location,
        checkpoint_files=files,
        checkpoint_bytes=size,
        problems=problems,
    )


def study_statuses(target: str | None = None, *, storage: str | None = None) -> list[StudyStatus]:
    """The status of every study on the Prefect server, or of one (name or flow-run id).

    Raises:
        StatusError: Nothing on the server matches `target`.
    """
    return [build_status(run, storage=storage) for run in latest_runs(target)]
