"""Where each study stands: built from its flow run, its Optuna storage and its checkpoints.

`study_statuses()` only reads: the Prefect API for the study's latest
`pausable-study` flow run, the study's Optuna storage (trials, pause history,
resumptions, epoch times) and lease, and the manifests of its checkpoints. The
stored sampler is never unpickled. `intermission status` renders the result.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from prefect.client.schemas.objects import FlowRun
from sqlalchemy import column, inspect as sa_inspect, select, table
from sqlalchemy.engine import make_url

from prefect_intermission.training.store import CheckpointStore
from prefect_intermission.errors import IntermissionError
from prefect_intermission.reporting.links import flow_run_url
from prefect_intermission.pausing.run_states import FLOW_PAUSE_KEY_PREFIX
from prefect_intermission.pausing.abandonment import ABANDONED_STATE_NAME
from prefect_intermission.blocks.pause_policy import PausePolicy
from prefect_intermission.study.config import StudyConfig
from prefect_intermission.study.flow_runs import StatusError, latest_runs, study_config_of, study_name_of
from prefect_intermission.study.state import (
    TRIAL_ATTEMPT_STARTED_ATTR,
    TRIAL_EPOCH_SECONDS_ATTR,
    TRIAL_PAUSED_EPOCH_ATTR,
    TRIAL_RESUMPTIONS_ATTR,
    TRIAL_STATUS_ATTR,
    missing_sqlite_file,
    open_storage,
    pause_history,
)

LEASES_TABLE = "intermission_study_leases"
#: A run Prefect has called running (or pausing) this long without anyone holding the study's
#: lease is abandoned (an expired lease says so at once).
ABANDONED_AFTER_SECONDS = 120.0

@dataclass(frozen=True)
class TrialProgress:
    """One unfinished trial: how far it trained and its last metric.

    Attributes:
        status: "running" (an execution trains it now), "paused", or "interrupted"
            (its execution stopped without pausing it, e.g. a crash).
        epochs_done: Epochs reported to Optuna; training continues with epoch `epochs_done`.
        paused_after_epoch: The epoch it paused after (0-based), when paused.
    """

    number: int
    status: str
    epochs_done: int
    max_epochs: int
    last_metric: float | None
    paused_after_epoch: int | None
    params: dict[str, Any]


@dataclass(frozen=True)
class StudyStatus:
    """Everything `intermission status` shows about one study.

    Times are ISO 8601 strings in UTC; durations are seconds. A field is None when the
    stored data does not say (e.g. no completed trial yet: no best value).
    """

    study_name: str
    state: str
    prefect_state: str | None
    flow_run_id: str | None
    ui_url: str | None
    storage: str
    n_trials: int
    max_epochs: int
    trials: dict[str, int]
    unfinished: list[TrialProgress]
    best_value: float | None
    best_params: dict[str, Any] | None
    best_trial: int | None
    started_at: str | None
    training_seconds: float
    training_in_progress_seconds: float
    measured_epochs: int
    mean_epoch_seconds: float | None
    epochs_left: int
    estimated_remaining_seconds: float | None
    last_pause: dict[str, Any] | None
    pauses: list[dict[str, Any]]
    resumptions: list[dict[str, Any]]
    resumes_at: str | None
    checkpoints: str | None
    checkpoint_files: int
    checkpoint_bytes: int
    problems: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The status as plain JSON-ready data."""
        return asdict(self)


def hide_password(url: str) -> str:
    """A storage URL safe to print: any password is replaced by `***`."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable storage URL>"


def _checkpoint_location(config: StudyConfig, problems: list[str]) -> str:
    """Where the study's checkpoints are, as its run resolves it (a pause policy may still set it)."""
    if not config.pause_policy:
        return config.checkpoints
    try:
        policy = PausePolicy.load(config.pause_policy)
    except Exception as e:  # noqa: BLE001 - deleted, or a server this machine cannot reach
        problems.append(f"pause policy {config.pause_policy!r} unreadable from here: {e}")
        return config.checkpoints
    return config.with_policy_location(policy, warn=False).checkpoints


def _iso(value: datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") if value is not None else None


# -- storage ------------------------------------------------------------------
def _lease(engine: Any, study_name: str) -> tuple[float, float] | None:
    """(expires_at, renewed_at) of the study's lease (epoch seconds), or None when nobody holds it."""
    if not sa_inspect(engine).has_table(LEASES_TABLE):
        return None
    leases = table(LEASES_TABLE, column("study_name"), column("expires_at"), column("renewed_at"))
    with engine.connect() as conn:
        row = conn.execute(
            select(leases.c.expires_at, leases.c.renewed_at).where(leases.c.study_name == study_name)
        ).first()
    return (float(row[0]), float(row[1])) if row else None


def _trial_progress(t: FrozenTrial, status: str, max_epochs: int) -> TrialProgress:
    values = t.intermediate_values
    last = max(values) if values else None
    return TrialProgress(
        number=t.number,
        status=status,
        epochs_done=last + 1 if last is not None else 0,
        max_epochs=max_epochs,
        last_metric=values[last] if last is not None else None,
        paused_after_epoch=t.system_attrs.get(TRIAL_PAUSED_EPOCH_ATTR) if status == "paused" else None,
        params=dict(t.params),
    )


def _state(run: FlowRun, pauses: list[dict[str, Any]], lease: str, renewed_at: float | None) -> str:
    """The study's state in the words of the README, from its flow run and its lease.

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


def build_status(run: FlowRun, *, storage: str | None = None, now: float | None = None) -> StudyStatus:
    """The status of the study a `pausable-study` flow run runs.

    Args:
        run: The study's flow run (its parameters say where the study is stored).
        storage: Read the study from this SQLAlchemy URL instead of the run's `storage`.
        now: The current time (epoch seconds), for the lease check.
    """
    config = study_config_of(run)
    study_name = config.study_name
    url = storage or config.storage
    n_trials, max_epochs = config.n_trials, config.max_epochs
    problems: list[str] = []
    study: optuna.Study | None = None
    held: tuple[float, float] | None = None
    try:
        missing = missing_sqlite_file(url)
        if missing:
            problems.append(
                f"the study's storage {hide_password(url)} does not exist here ({missing}); run "
                "`intermission status` from the flow run's working directory, or pass --storage."
            )
        else:
            rdb = open_storage(url)
            study = optuna.load_study(study_name=study_name, storage=rdb)
            held = _lease(rdb.engine, study_name)
    except KeyError:
        problems.append(f"study {study_name!r} is not in {hide_password(url)} (yet).")
    except IntermissionError as e:
        problems.append(str(e))
    if study is None:
        lease = "unknown"
    elif held is None:
        lease = "none"
    else:
        lease = "live" if held[0] > (now or time.time()) else "expired"
    lease_live = lease == "live"

    all_trials = study.get_trials(deepcopy=False) if study is not None else []
    counts = {"complete": 0, "pruned": 0, "failed": 0, "running": 0, "paused": 0, "interrupted": 0}
    unfinished: list[TrialProgress] = []
    epoch_seconds: list[float] = []
    in_progress = 0.0  # trials training now record their epoch times when their attempt ends
    resumptions: list[dict[str, Any]] = []
    for t in all_trials:
        epoch_seconds.extend(float(s) for s in t.system_attrs.get(TRIAL_EPOCH_SECONDS_ATTR) or [])
        resumptions.extend(
            {"trial": t.number, **r} for r in t.system_attrs.get(TRIAL_RESUMPTIONS_ATTR) or []
        )
        if t.state == TrialState.COMPLETE:
            counts["complete"] += 1
        elif t.state == TrialState.PRUNED:
            counts["pruned"] += 1
        elif t.state == TrialState.FAIL:
            counts["failed"] += 1
        elif t.state == TrialState.RUNNING:
            marked = t.system_attrs.get(TRIAL_STATUS_ATTR)
            status = "paused" if marked == "paused" else "running" if lease_live else "interrupted"
            counts[status] += 1
            unfinished.append(_trial_progress(t, status, max_epochs))
            if status == "running" and (began := t.system_attrs.get(TRIAL_ATTEMPT_STARTED_ATTR)):
                in_progress += max((now or time.time()) - datetime.fromisoformat(began).timestamp(), 0.0)
    counts["finished"] = counts["complete"] + counts["pruned"]
    resumptions.sort(key=lambda r: (str(r.get("at")), r["trial"]))

    best_value = best_params = best_trial = None
    if counts["complete"]:
        best = study.best_trial  # type: ignore[union-attr]
        best_value, best_params, best_trial = best.value, dict(best.params), best.number

    not_started = max(n_trials - counts["finished"] - len(unfinished), 0)
    epochs_left = sum(max(max_epochs - u.epochs_done, 0) for u in unfinished) + not_started * max_epochs
    mean_epoch = statistics.fmean(epoch_seconds) if epoch_seconds else None
    finished_state = run.state is not None and run.state.is_completed() and run.state.name != "Paused"
    if finished_state:
        epochs_left = 0

    pauses = pause_history(study) if study is not None else []
    starts = [t.datetime_start for t in all_trials if t.datetime_start is not None]
    started = run.start_time or (min(starts) if starts else None)
    resumes_at = None
    if run.state is not None and run.state.is_scheduled():
        resumes_at = _iso(run.state.state_details.scheduled_time or run.next_scheduled_start_time)

    checkpoints_url = _checkpoint_location(config, problems)
    location: str | None = None
    files = size = 0
    try:
        store = CheckpointStore(checkpoints_url)
        location = store.study_folder(study_name)
        for t in all_trials:
            for entry in store.for_trial(study_name, t.number).entries():
                files += 1
                size += int(entry["size"])
    except Exception as e:  # noqa: BLE001 - e.g. a bucket this machine has no credentials for
        problems.append(f"checkpoints unreadable from here: {type(e).__name__}: {e}")

    return StudyStatus(
        study_name=study_name,
        state=_state(run, pauses, lease, held[1] if held else None),
        prefect_state=run.state.name if run.state else None,
        flow_run_id=str(run.id),
        ui_url=flow_run_url(run.id),
        storage=hide_password(url),
        n_trials=n_trials,
        max_epochs=max_epochs,
        trials=counts,
        unfinished=unfinished,
        best_value=best_value,
        best_params=best_params,
        best_trial=best_trial,
        started_at=_iso(started),
        training_seconds=round(sum(epoch_seconds) + in_progress, 3),
        training_in_progress_seconds=round(in_progress, 3),
        measured_epochs=len(epoch_seconds),
        mean_epoch_seconds=round(mean_epoch, 4) if mean_epoch is not None else None,
        epochs_left=epochs_left,
        estimated_remaining_seconds=(
            round(mean_epoch * epochs_left, 1) if mean_epoch is not None else None
        ),
        last_pause=pauses[-1] if pauses else None,
        pauses=pauses,
        resumptions=resumptions,
        resumes_at=resumes_at,
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

