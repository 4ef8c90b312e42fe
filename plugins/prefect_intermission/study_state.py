"""The state of a pausable study, kept in the study's own Optuna storage.

Everything a resumed flow run needs comes from here and from the checkpoints,
never from process memory: the sampler (with its RNG), which trials are paused
and at which epoch, and the history of pauses. Keys are Optuna system attributes
prefixed with `intermission:`, so standard Optuna tools still read the study.
"""

from __future__ import annotations

import base64
import os
import pickle
import threading
from datetime import datetime, timezone
from typing import Any

import optuna
from optuna.samplers import BaseSampler, RandomSampler, TPESampler
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.engine import make_url

from prefect_intermission.errors import ConfigurationError

SAMPLER_ATTR = "intermission:sampler"
PAUSES_ATTR = "intermission:pauses"
TRIAL_STATUS_ATTR = "intermission:status"
TRIAL_PAUSED_EPOCH_ATTR = "intermission:paused_epoch"
TRIAL_SEED_ATTR = "intermission:seed"

FINISHED_STATES = (TrialState.COMPLETE, TrialState.PRUNED)
SAMPLERS = ("tpe", "random")
PRUNERS = ("median", "none")


def make_sampler(name: str, seed: int) -> BaseSampler:
    """A new seeded sampler by name (`"tpe"` or `"random"`)."""
    if name == "tpe":
        return TPESampler(seed=seed)
    if name == "random":
        return RandomSampler(seed=seed)
    raise ConfigurationError(f"sampler must be one of {SAMPLERS}, but got {name!r}.")


def make_pruner(name: str) -> optuna.pruners.BasePruner:
    """A pruner by name (`"median"` or `"none"`)."""
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=2)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ConfigurationError(f"pruner must be one of {PRUNERS}, but got {name!r}.")


def open_storage(url: str) -> optuna.storages.RDBStorage:
    """Open Optuna RDB storage at a SQLAlchemy URL, creating a SQLite file's folder."""
    try:
        parsed = make_url(url)
    except Exception as e:
        raise ConfigurationError(
            f"storage must be a SQLAlchemy URL such as 'sqlite:///studies.db' or "
            f"'postgresql+psycopg://user@host/db', but got {url!r}."
        ) from e
    engine_kwargs: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(parsed.database)), exist_ok=True)
        # Concurrent trials write from several threads; wait for SQLite's lock.
        engine_kwargs["connect_args"] = {"timeout": 60}
    else:
        # A database server may drop idle connections while a study is paused.
        engine_kwargs["pool_pre_ping"] = True
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)
    except ImportError as e:
        raise ConfigurationError(
            f"The database driver for {parsed.drivername!r} storage is not installed: {e}. For "
            "PostgreSQL install prefect-intermission[postgres] (psycopg) and use a "
            "'postgresql+psycopg://' URL."
        ) from e


def utc_now_iso() -> str:
    """The current time as an ISO 8601 string in UTC."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class StudyState:
    """Reads and writes the pause-related state of one study.

    The sampler is shared by every trial of this process; `sampler_lock` guards it
    while it is stored or used to ask for a trial.
    """

    def __init__(self, study: optuna.Study) -> None:
        self.study = study
        self._storage = study._storage
        self._study_id = study._study_id
        self.sampler_lock = threading.RLock()

    # -- sampler ---------------------------------------------------------------
    def stored_sampler(self) -> BaseSampler | None:
        """The sampler stored with the study, or None when none was stored yet."""
        blob = self._storage.get_study_system_attrs(self._study_id).get(SAMPLER_ATTR)
        if blob is None:
            return None
        return pickle.loads(base64.b64decode(blob))

    def save_sampler(self) -> None:
        """Store the study's sampler, RNG included, so a resumed run continues its sequence."""
        with self.sampler_lock:
            blob = base64.b64encode(pickle.dumps(self.study.sampler)).decode("ascii")
            self._storage.set_study_system_attr(self._study_id, SAMPLER_ATTR, blob)

    # -- trials ----------------------------------------------------------------
    def finished_count(self) -> int:
        """Trials that count towards `n_trials`: complete and pruned ones."""
        return len(self.study.get_trials(deepcopy=False, states=FINISHED_STATES))

    def paused_trials(self) -> list[FrozenTrial]:
        """Trials left RUNNING by a pause, oldest first."""
        running = self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        return [t for t in running if t.system_attrs.get(TRIAL_STATUS_ATTR) == "paused"]

    def mark_running(self, trial_id: int, seed: int) -> None:
        """Record that a trial is training in this run."""
        self._storage.set_trial_system_attr(trial_id, TRIAL_STATUS_ATTR, "running")
        self._storage.set_trial_system_attr(trial_id, TRIAL_SEED_ATTR, seed)

    def mark_paused(self, trial_id: int, epoch: int | None) -> None:
        """Record that a trial stopped for a pause after `epoch` (None: before its first)."""
        self._storage.set_trial_system_attr(trial_id, TRIAL_PAUSED_EPOCH_ATTR, epoch)
        self._storage.set_trial_system_attr(trial_id, TRIAL_STATUS_ATTR, "paused")

    # -- study -----------------------------------------------------------------
    def pause_history(self) -> list[dict[str, Any]]:
        """Every pause of this study, oldest first."""
        return list(self._storage.get_study_system_attrs(self._study_id).get(PAUSES_ATTR, []))

    def record_pause(self, *, flow_run_id: str, reason: str, trials: dict[int, int | None]) -> None:
        """Append a pause (who asked, which trials stopped at which epoch) to the history."""
        entry = {
            "paused_at": utc_now_iso(),
            "flow_run_id": flow_run_id,
            "reason": reason,
            "trials": {str(number): epoch for number, epoch in sorted(trials.items())},
        }
        history = [*self.pause_history(), entry]
        self._storage.set_study_system_attr(self._study_id, PAUSES_ATTR, history)
