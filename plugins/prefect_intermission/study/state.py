"""The state of a pausable study, kept in the study's own Optuna storage.

Everything a resumed flow run needs comes from here and from the checkpoints,
never from process memory: the sampler (with its RNG), which trials are paused
and at which epoch, and the history of pauses. Keys are Optuna system attributes
prefixed with `intermission:`, so standard Optuna tools still read the study.
"""

from __future__ import annotations

import base64
import logging
import os
import pickle
import re
import threading
import time
from contextlib import AbstractContextManager
from datetime import datetime, timezone
from typing import Any
from uuid import uuid4

import optuna
from optuna.samplers import BaseSampler
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError

from prefect_intermission._optuna_internals import storage_of, study_id_of
from prefect_intermission._signing import sign, verify
from prefect_intermission.errors import ConfigurationError
from prefect_intermission.study.leases import LeaseLock

SAMPLER_ATTR = "intermission:sampler"
PAUSES_ATTR = "intermission:pauses"
REFUSALS_ATTR = "intermission:refusals"
SETTINGS_ATTR = "intermission:settings"
STUDY_UID_ATTR = "intermission:study_uid"
TRAINED_SECONDS_ATTR = "intermission:trained_seconds"
TRIAL_FAILURE_ATTR = "intermission:failure"
STOP_ATTR = "intermission:stop"
TRIAL_STATUS_ATTR = "intermission:status"
TRIAL_PAUSED_EPOCH_ATTR = "intermission:paused_epoch"
TRIAL_PAUSED_STEPS_ATTR = "intermission:paused_steps_into_epoch"
TRIAL_SEED_ATTR = "intermission:seed"
TRIAL_RESUMPTIONS_ATTR = "intermission:resumptions"
TRIAL_EPOCH_SECONDS_ATTR = "intermission:epoch_seconds"
TRIAL_ATTEMPT_STARTED_ATTR = "intermission:attempt_started_at"

FINISHED_STATES = (TrialState.COMPLETE, TrialState.PRUNED)
SCHEMA_RACE_ATTEMPTS = 5


class SamplerRefused(Exception):
    """The stored sampler state is malformed or failed its signature check, and was not unpickled."""


_SIGNATURE = re.compile(r"[0-9a-f]{64}")  # a hex HMAC-SHA256, as `sign` writes it


def _signed_pickle(stored: object) -> tuple[bytes, str]:
    """The pickled bytes and signature of a stored sampler state, checked for form only.

    Raises:
        SamplerRefused: The state is not a mapping with a base64 `pickle` and a hex `hmac`.
    """
    if not isinstance(stored, dict) or not {"pickle", "hmac"} <= stored.keys():
        raise SamplerRefused("the stored sampler state is not in the signed format")
    signature, encoded = stored["hmac"], stored["pickle"]
    if not isinstance(signature, str) or not _SIGNATURE.fullmatch(signature):
        raise SamplerRefused(
            f"the stored sampler's signature is not a 64-digit hex string (got {_shown(signature)})"
        )
    if not isinstance(encoded, str):
        raise SamplerRefused(f"the stored sampler's pickle is not a base64 string (got {_shown(encoded)})")
    try:
        return base64.b64decode(encoded, validate=True), signature
    except ValueError:  # binascii.Error, or non-ASCII text
        raise SamplerRefused("the stored sampler's pickle is not valid base64") from None


def _shown(value: object) -> str:
    """A stored value as a log line may show it: its repr, cut short."""
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:37]}..."


def open_storage(url: str) -> optuna.storages.RDBStorage:
    """Open Optuna RDB storage at a SQLAlchemy URL, creating a SQLite file's folder."""
    try:
        parsed = make_url(url)
    except Exception as e:
        raise ConfigurationError(  # the URL itself may hold a password: not echoed
            "storage must be a SQLAlchemy URL such as 'sqlite:///studies.db' or "
            "'postgresql+psycopg://user@host/db', but the one given cannot be parsed."
        ) from e
    shown = parsed.render_as_string(hide_password=True)
    engine_kwargs: dict[str, Any] = {}
    try:
        if parsed.get_backend_name() == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                os.makedirs(os.path.dirname(os.path.abspath(parsed.database)), exist_ok=True)
            # Concurrent trials write from several threads; wait for SQLite's lock.
            engine_kwargs["connect_args"] = {"timeout": 60}
        else:
            # A database server may drop idle connections while a study is paused.
            engine_kwargs["pool_pre_ping"] = True
        return _create_rdb_storage(url, engine_kwargs)
    except ImportError as e:
        raise ConfigurationError(
            f"The database driver for {parsed.drivername!r} storage is not installed: {e}. For "
            "PostgreSQL install prefect-intermission[postgres] (psycopg) and use a "
            "'postgresql+psycopg://' URL."
        ) from e
    except (SQLAlchemyError, OSError, ValueError) as e:
        problem = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigurationError(
            f"Cannot open the study storage {shown}: {problem}. Check the URL's dialect and "
            "driver (e.g. sqlite:///studies.db, postgresql+psycopg://user@host/db), that "
            "the database server is reachable, and that the location is writable."
        ) from e


def _create_rdb_storage(url: str, engine_kwargs: dict[str, Any]) -> optuna.storages.RDBStorage:
    """RDBStorage, retried when another process is creating the same new database's schema.

    Two executions opening a new database at once both create Optuna's tables; the
    slower one fails on the schema version row the faster one just wrote. The schema
    is then complete, so opening it again succeeds.
    """
    for attempt in range(SCHEMA_RACE_ATTEMPTS):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)
        except (IntegrityError, OperationalError) as e:
            lost_race = "alembic_version" in str(e) or "already exists" in str(e)
            if not lost_race or attempt == SCHEMA_RACE_ATTEMPTS - 1:
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def missing_sqlite_file(url: str) -> str | None:
    """The missing database file of a SQLite URL (opening it would create it), else None."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return None if os.path.exists(parsed.database) else os.path.abspath(parsed.database)


def study_uid(storage: optuna.storages.BaseStorage, study_id: int) -> str | None:
    """The random id a study got when a run first opened it: a study created again under
    the same name, here or elsewhere, has another. None for a study not opened by a run yet."""
    return storage.get_study_system_attrs(study_id).get(STUDY_UID_ATTR)


def utc_now_iso() -> str:
    """The current time as an ISO 8601 string in UTC."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def pause_history(study: optuna.Study) -> list[dict[str, Any]]:
    """Every pause of a study, oldest first: when, why, and which trials stopped after which epoch."""
    return list(storage_of(study).get_study_system_attrs(study_id_of(study)).get(PAUSES_ATTR, []))


def study_seed(study: optuna.Study) -> int | None:
    """The seed recorded with a study when it was created (drawn at random if none was given)."""
    return (storage_of(study).get_study_system_attrs(study_id_of(study)).get(SETTINGS_ATTR) or {}).get("seed")


class StudyState:
    """Reads and writes the pause-related state of one study.

    The sampler is shared by every trial of this process; `sampler_lock` guards it
    while it is stored or used to ask for a trial. When trials run in several
    processes, `share_sampler` makes that lock one that every process takes in turn,
    reloading the stored sampler each time.

    Args:
        study: The Optuna study, in RDB storage.
        engine: The SQLAlchemy engine of that storage (for the study's lease).
        signing_key: Signs the stored sampler; an unsigned or altered one is refused.
    """

    def __init__(self, study: optuna.Study, *, engine: Engine, signing_key: bytes) -> None:
        self.study = study
        self.engine = engine
        self._storage = storage_of(study)
        self._study_id = study_id_of(study)
        self._key = signing_key
        self.sampler_lock: AbstractContextManager[Any] = threading.RLock()

    def uid(self) -> str:
        """The study's random id (see `study_uid`), given to it now if it has none yet."""
        uid = study_uid(self._storage, self._study_id)
        if uid is None:
            uid = uuid4().hex
            self._storage.set_study_system_attr(self._study_id, STUDY_UID_ATTR, uid)
        return uid

    # -- sampler ---------------------------------------------------------------
    def stored_sampler(self) -> BaseSampler | None:
        """The sampler stored with the study, or None when none was stored yet.

        Raises:
            SamplerRefused: The stored sampler is malformed or not signed with this
                project's key; nothing was unpickled.
        """
        stored = self._storage.get_study_system_attrs(self._study_id).get(SAMPLER_ATTR)
        if stored is None:
            return None
        data, signature = _signed_pickle(stored)
        if not verify(data, signature, self._key):
            raise SamplerRefused("the stored sampler state does not match its signature")
        return pickle.loads(data)

    def share_sampler(self, owner: str) -> None:
        """Share the stored sampler with the other processes training this study's trials.

        From now on `sampler_lock` is held by one process at a time (a lease in the
        study's database, `owner` naming this process) and the sampler is reloaded from
        storage whenever it is taken, so every ask and every suggestion continues the
        one stored sequence instead of a stale copy.
        """
        self.sampler_lock = LeaseLock(
            self.engine, f"{self.study.study_name} (sampler)", owner, on_acquired=self.reload_sampler
        )

    def reload_sampler(self) -> None:
        """Replace the study's sampler with the stored one (kept as it is if none is usable)."""
        try:
            stored = self.stored_sampler()
        except SamplerRefused as refused:
            logging.getLogger(__name__).warning("Keeping this process's sampler: %s.", refused)
            return
        if stored is not None:
            self.study.sampler = stored

    def save_sampler(self) -> None:
        """Store the study's sampler, RNG included, so a resumed run continues its sequence."""
        with self.sampler_lock:
            data = pickle.dumps(self.study.sampler)
            stored = {"pickle": base64.b64encode(data).decode("ascii"), "hmac": sign(data, self._key)}
            self._storage.set_study_system_attr(self._study_id, SAMPLER_ATTR, stored)

    def record_refusal(self, what: str, problem: str) -> None:
        """Record that stored state was refused instead of loaded."""
        refusals = self._storage.get_study_system_attrs(self._study_id).get(REFUSALS_ATTR, [])
        entry = {"at": utc_now_iso(), "what": what, "problem": problem}
        self._storage.set_study_system_attr(self._study_id, REFUSALS_ATTR, [*refusals, entry])

    def recorded_settings(self) -> dict[str, Any] | None:
        """The sampler, pruner, objective settings and seed recorded with the study, or None."""
        return self._storage.get_study_system_attrs(self._study_id).get(SETTINGS_ATTR)

    def record_settings(self, settings: dict[str, Any]) -> None:
        """Record the study's sampler, pruner, objective settings and seed."""
        self._storage.set_study_system_attr(self._study_id, SETTINGS_ATTR, settings)

    def seed(self) -> int | None:
        """The seed recorded with the study (drawn at random if none was given), or None."""
        return study_seed(self.study)

    def trained_seconds(self) -> float:
        """The study's training time so far, all executions together (pauses excluded)."""
        return float(self._storage.get_study_system_attrs(self._study_id).get(TRAINED_SECONDS_ATTR, 0.0))

    def record_trained_seconds(self, seconds: float) -> None:
        """Record the study's training time so far."""
        self._storage.set_study_system_attr(self._study_id, TRAINED_SECONDS_ATTR, round(seconds, 3))

    def stop_request(self) -> dict[str, Any] | None:
        """The pending Stop & Save request (when, by whom), or None."""
        return self._storage.get_study_system_attrs(self._study_id).get(STOP_ATTR)

    def clear_stop_request(self) -> None:
        """The study stopped: its request is done."""
        self._storage.set_study_system_attr(self._study_id, STOP_ATTR, None)

    # -- trials ----------------------------------------------------------------
    def enqueue(self, parameter_sets: list[dict[str, Any]]) -> None:
        """Queue parameter sets to try first; a set the study already has is not queued again."""
        for params in parameter_sets:
            self.study.enqueue_trial(params, skip_if_exists=True)

    def finished_count(self) -> int:
        """Trials that count towards `n_trials`: complete and pruned ones."""
        return len(self.study.get_trials(deepcopy=False, states=FINISHED_STATES))

    def paused_trials(self) -> list[FrozenTrial]:
        """Trials left RUNNING by a pause, oldest first."""
        return [t for t in self.unfinished_trials() if t.system_attrs.get(TRIAL_STATUS_ATTR) == "paused"]

    def unfinished_trials(self) -> list[FrozenTrial]:
        """Trials left RUNNING by earlier executions (paused, or cut off by a crash), oldest first.

        Only the execution holding the study's lease calls this, so none of them is
        being trained by a live execution.
        """
        return sorted(
            self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)),
            key=lambda t: t.number,
        )

    def record_resumption(self, trial_id: int, record: dict[str, Any]) -> None:
        """Append to a trial's history of resumptions (when, why, from which epoch, what was lost)."""
        history = self._storage.get_trial_system_attrs(trial_id).get(TRIAL_RESUMPTIONS_ATTR, [])
        self._storage.set_trial_system_attr(
            trial_id, TRIAL_RESUMPTIONS_ATTR, [*history, {"at": utc_now_iso(), **record}]
        )

    def mark_running(self, trial_id: int, seed: int) -> None:
        """Record that a trial is training in this run, and since when."""
        self._storage.set_trial_system_attr(trial_id, TRIAL_STATUS_ATTR, "running")
        self._storage.set_trial_system_attr(trial_id, TRIAL_SEED_ATTR, seed)
        self._storage.set_trial_system_attr(trial_id, TRIAL_ATTEMPT_STARTED_ATTR, utc_now_iso())

    def record_epoch_seconds(self, trial_id: int, seconds: list[float]) -> None:
        """Record the wall time of each epoch a trial has trained (pauses not counted)."""
        self._storage.set_trial_system_attr(trial_id, TRIAL_EPOCH_SECONDS_ATTR, seconds)

    def record_failure(self, trial_id: int, error: str, *, study_goes_on: bool) -> None:
        """Record why a trial failed, and whether that stops the study (read by the study run)."""
        self._storage.set_trial_system_attr(
            trial_id, TRIAL_FAILURE_ATTR, {"error": error, "study_goes_on": study_goes_on}
        )

    def mark_paused(self, trial_id: int, epoch: int | None, *, steps_into_epoch: int | None = None) -> None:
        """Record that a trial stopped for a pause after `epoch` (None: before its first), and
        `steps_into_epoch` steps into the next one when it paused within it."""
        self._storage.set_trial_system_attr(trial_id, TRIAL_PAUSED_EPOCH_ATTR, epoch)
        self._storage.set_trial_system_attr(trial_id, TRIAL_PAUSED_STEPS_ATTR, steps_into_epoch)
        self._storage.set_trial_system_attr(trial_id, TRIAL_STATUS_ATTR, "paused")

    # -- study -----------------------------------------------------------------
    def pause_history(self) -> list[dict[str, Any]]:
        """Every pause of this study, oldest first."""
        return pause_history(self.study)

    def record_pause(
        self,
        *,
        flow_run_id: str,
        reason: str,
        trials: dict[int, int | None],
        resources: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Append a pause (who asked, which trials stopped after which epoch, what the
        process was using) to the history, and return the entry."""
        entry = {
            "paused_at": utc_now_iso(),
            "flow_run_id": flow_run_id,
            "reason": reason,
            "trials": {str(number): epoch for number, epoch in sorted(trials.items())},
            "resources": resources,
        }
        history = [*self.pause_history(), entry]
        self._storage.set_study_system_attr(self._study_id, PAUSES_ATTR, history)
        return entry
