"""Read-only facts about one study: its Optuna storage, its lease, its trials and its checkpoints.

Every reader here only reads; the stored sampler is never unpickled. What cannot be
read is appended to `problems` (shown by `intermission status`) instead of raising,
except by `load_study`, for commands that need the study.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy import column, inspect as sa_inspect, select, table

from prefect_intermission._counting import epochs_done
from prefect_intermission._redaction import hide_password
from prefect_intermission.blocks.pause_policy import PausePolicy
from prefect_intermission.cli._status_model import TrialProgress
from prefect_intermission.errors import ConfigurationError, IntermissionError
from prefect_intermission.study.config import StudyConfig
from prefect_intermission.study.results import best_trial, pareto_front, several_objectives
from prefect_intermission.study.state import (
    TRIAL_ATTEMPT_STARTED_ATTR,
    TRIAL_EPOCH_SECONDS_ATTR,
    TRIAL_PAUSED_EPOCH_ATTR,
    TRIAL_PAUSED_STEPS_ATTR,
    TRIAL_RESUMPTIONS_ATTR,
    TRIAL_STATUS_ATTR,
    missing_sqlite_file,
    open_storage,
)
from prefect_intermission.training.store import CheckpointStore

LEASES_TABLE = "intermission_study_leases"


# -- the study and its lease ----------------------------------------------------
def _read_lease(engine: Any, study_name: str) -> tuple[float, float] | None:
    """(expires_at, renewed_at) of the study's lease (epoch seconds), or None when nobody holds it."""
    if not sa_inspect(engine).has_table(LEASES_TABLE):
        return None
    leases = table(LEASES_TABLE, column("study_name"), column("expires_at"), column("renewed_at"))
    with engine.connect() as conn:
        row = conn.execute(
            select(leases.c.expires_at, leases.c.renewed_at).where(leases.c.study_name == study_name)
        ).first()
    return (float(row[0]), float(row[1])) if row else None


def load_study(study_name: str, storage: str) -> optuna.Study:
    """Load an existing study, with an error that names the study and the storage when missing."""
    if missing := missing_sqlite_file(storage):
        raise ConfigurationError(
            f"The storage {hide_password(storage)} does not exist ({missing}). Pass the flow's "
            "storage with --storage, or run the command from the flow run's working directory."
        )
    try:
        return optuna.load_study(study_name=study_name, storage=open_storage(storage))
    except KeyError as e:
        raise ConfigurationError(
            f"There is no study {study_name!r} in {hide_password(storage)}; check the name "
            "(`intermission status` lists studies) or pass the right --storage."
        ) from e


def open_study(
    url: str, study_name: str, problems: list[str]
) -> tuple[optuna.Study | None, tuple[float, float] | None]:
    """The stored study (None when unreadable) and its lease's (expires_at, renewed_at), if held."""
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
            held = _read_lease(rdb.engine, study_name)
    except KeyError:
        problems.append(f"study {study_name!r} is not in {hide_password(url)} (yet).")
    except IntermissionError as e:
        problems.append(str(e))
    return study, held


def lease_state(study: optuna.Study | None, held: tuple[float, float] | None, now: float | None) -> str:
    """The lease: "live", "expired", "none" (nobody holds it) or "unknown" (storage unreadable)."""
    if study is None:
        return "unknown"
    if held is None:
        return "none"
    return "live" if held[0] > (now or time.time()) else "expired"


# -- the trials -------------------------------------------------------------------
@dataclass
class TrialFacts:
    """What the stored trials say: counts by status, unfinished trials and the time spent training.

    `in_progress` is the time trials training now have spent in their current attempt
    (they record their epoch times only when it ends).
    """

    counts: dict[str, int]
    unfinished: list[TrialProgress] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)
    in_progress: float = 0.0
    resumptions: list[dict[str, Any]] = field(default_factory=list)
    numbers: list[int] = field(default_factory=list)
    first_start: datetime | None = None
    best: FrozenTrial | None = None  # with one objective
    pareto_front: list[dict[str, Any]] | None = None  # with several: the best trials


def _trial_progress(t: FrozenTrial, status: str, max_epochs: int) -> TrialProgress:
    values = t.intermediate_values
    last = max(values) if values else None
    return TrialProgress(
        number=t.number,
        status=status,
        epochs_done=epochs_done(last),
        max_epochs=max_epochs,
        last_metric=values[last] if last is not None else None,
        paused_after_epoch=t.system_attrs.get(TRIAL_PAUSED_EPOCH_ATTR) if status == "paused" else None,
        paused_steps_into_epoch=t.system_attrs.get(TRIAL_PAUSED_STEPS_ATTR) if status == "paused" else None,
        params=dict(t.params),
    )


def _add_unfinished(
    facts: TrialFacts, t: FrozenTrial, max_epochs: int, lease_live: bool, now: float | None
) -> None:
    """Count a RUNNING trial as running, paused or interrupted, with how long it has trained now."""
    marked = t.system_attrs.get(TRIAL_STATUS_ATTR)
    status = "paused" if marked == "paused" else "running" if lease_live else "interrupted"
    facts.counts[status] += 1
    facts.unfinished.append(_trial_progress(t, status, max_epochs))
    if status == "running" and (began := t.system_attrs.get(TRIAL_ATTEMPT_STARTED_ATTR)):
        facts.in_progress += max((now or time.time()) - datetime.fromisoformat(began).timestamp(), 0.0)


_COUNTED = ("complete", "pruned", "failed", "running", "paused", "interrupted")
_FINAL_COUNTS = {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned", TrialState.FAIL: "failed"}


def read_trials(
    study: optuna.Study | None, max_epochs: int, *, lease_live: bool, now: float | None
) -> TrialFacts:
    """The facts of the study's trials (none when the study is unreadable)."""
    all_trials = study.get_trials(deepcopy=False) if study is not None else []
    facts = TrialFacts(counts=dict.fromkeys(_COUNTED, 0))
    for t in all_trials:
        facts.epoch_seconds.extend(float(s) for s in t.system_attrs.get(TRIAL_EPOCH_SECONDS_ATTR) or [])
        facts.resumptions.extend(
            {"trial": t.number, **r} for r in t.system_attrs.get(TRIAL_RESUMPTIONS_ATTR) or []
        )
        if t.state in _FINAL_COUNTS:
            facts.counts[_FINAL_COUNTS[t.state]] += 1
        elif t.state == TrialState.RUNNING:
            _add_unfinished(facts, t, max_epochs, lease_live, now)
    facts.counts["finished"] = facts.counts["complete"] + facts.counts["pruned"]
    facts.resumptions.sort(key=lambda r: (str(r.get("at")), r["trial"]))
    facts.numbers = [t.number for t in all_trials]
    starts = [t.datetime_start for t in all_trials if t.datetime_start is not None]
    facts.first_start = min(starts) if starts else None
    if (facts.counts["complete"] or facts.counts["pruned"]) and study is not None:
        if several_objectives(study):
            facts.pareto_front = pareto_front(study)
        else:
            facts.best = best_trial(study)
    return facts


# -- the checkpoints ----------------------------------------------------------------
def checkpoint_location(config: StudyConfig, problems: list[str]) -> str:
    """Where the study's checkpoints are, as its run resolves it (a pause policy may still set it)."""
    if not config.pausing.pause_policy:
        return config.checkpointing.checkpoints
    try:
        policy = PausePolicy.load(config.pausing.pause_policy)
    except Exception as e:  # noqa: BLE001 - deleted, or a server this machine cannot reach
        problems.append(f"pause policy {config.pausing.pause_policy!r} unreadable from here: {e}")
        return config.checkpointing.checkpoints
    return config.with_policy_location(policy, warn=False).checkpointing.checkpoints


def read_checkpoints(
    url: str, study_name: str, trial_numbers: list[int], problems: list[str]
) -> tuple[str | None, int, int]:
    """(the study's checkpoint folder, its files, their bytes) for the given trials."""
    location: str | None = None
    files = size = 0
    try:
        store = CheckpointStore(url)
        location = store.study_folder(study_name)
        for number in trial_numbers:
            for entry in store.for_trial(study_name, number).entries():
                files += 1
                size += int(entry["size"])
    except Exception as e:  # noqa: BLE001 - e.g. a bucket this machine has no credentials for
        problems.append(f"checkpoints unreadable from here: {type(e).__name__}: {e}")
    return location, files, size
