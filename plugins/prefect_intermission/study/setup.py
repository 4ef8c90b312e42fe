"""Setting a study up before any work: its storage, its checkpoint store, its pause policy.

Each step refuses bad input with a message that says what is wrong and how to fix
it, and changes nothing already stored.
"""

from __future__ import annotations

from typing import Any

import optuna
from sqlalchemy.engine import make_url

from prefect_intermission._logging import run_logger
from prefect_intermission._signing import signing_key
from prefect_intermission.blocks.credentials import CheckpointStorageCredentials
from prefect_intermission.blocks.pause_policy import PausePolicy
from prefect_intermission.errors import ConfigurationError
from prefect_intermission.study.config import StudyConfig
from prefect_intermission.study.state import SamplerRefused, StudyState, make_pruner, make_sampler, open_storage
from prefect_intermission.training.store import CheckpointStore


_PASSWORD_QUERY_KEYS = frozenset({"password", "sslpassword"})


def refuse_password_in_storage_url(storage: str) -> None:
    """Flow parameters are shown in plain text in the UI and logs: no password may be in one."""
    try:
        url = make_url(storage)
    except Exception:
        return  # open_storage explains what a storage URL must look like
    if url.password or any(key.lower() in _PASSWORD_QUERY_KEYS for key in url.query):
        raise ConfigurationError(
            "The storage URL contains a password, and flow parameters are shown in plain text "
            "in the Prefect UI and logs. Remove the password from the URL and give it to the "
            "worker instead: PGPASSWORD in the worker's environment, or a ~/.pgpass file."
        )


def checkpoint_storage_options(credentials_block: str | None) -> dict[str, Any] | None:
    """The fsspec options from a saved `CheckpointStorageCredentials` block (None: the AWS environment)."""
    if not credentials_block:
        return None
    try:
        block = CheckpointStorageCredentials.load(credentials_block)
    except ValueError as e:
        raise ConfigurationError(
            f"No CheckpointStorageCredentials block named {credentials_block!r} on this "
            f"Prefect server ({e}). Save one first, e.g. "
            f"CheckpointStorageCredentials(...).save({credentials_block!r}), or leave "
            "checkpoint_credentials empty to use the worker's AWS environment."
        ) from e
    return block.storage_options()


def open_checkpoint_store(
    checkpoints: str, *, keep_last: int, credentials_block: str | None = None
) -> CheckpointStore:
    """The checkpoint store, with credentials from a saved block (or the AWS environment), checked."""
    storage_options = checkpoint_storage_options(credentials_block)
    store = CheckpointStore(checkpoints, keep_last=keep_last, storage_options=storage_options)
    store.verify()
    store.check_writable()
    return store


def load_study_state(
    study_name: str, storage: str, *, seed: int, direction: str, sampler: str, pruner: str
) -> StudyState:
    """Create the study or load it, with the sampler stored by earlier runs.

    A stored sampler whose signature does not match is never unpickled: the refusal
    is recorded with the study and a new sampler, seeded from `seed` and the number
    of trials so far, takes over.
    """
    rdb = open_storage(storage)
    study = optuna.create_study(
        study_name=study_name,
        storage=rdb,
        direction=direction,
        sampler=make_sampler(sampler, seed),
        pruner=make_pruner(pruner),
        load_if_exists=True,
    )
    state = StudyState(study, engine=rdb.engine, signing_key=signing_key())
    try:
        stored = state.stored_sampler()
    except SamplerRefused as refused:
        run_logger(__name__).warning(
            "Study %r: %s; it was not loaded. Continuing with a new sampler.", study_name, refused
        )
        state.record_refusal("sampler", str(refused))
        study.sampler = make_sampler(sampler, seed + len(study.trials))
        stored = None
    if stored is not None:
        study.sampler = stored
    else:
        state.save_sampler()
    return state


def load_policy(name: str | None) -> PausePolicy | None:
    if not name:
        return None
    try:
        return PausePolicy.load(name)
    except ValueError as e:
        raise ConfigurationError(
            f"No usable pause policy block named {name!r}: {e}. Create it on the Prefect UI's "
            f"Blocks page (type 'Pause Policy') or with PausePolicy(...).save({name!r})."
        ) from e


def open_study(config: StudyConfig) -> StudyState:
    """The study `config` names, created or loaded with its stored sampler."""
    return load_study_state(
        config.study_name, config.storage, seed=config.seed, direction=config.direction,
        sampler=config.sampler, pruner=config.pruner,
    )


def open_store(config: StudyConfig) -> CheckpointStore:
    """The checkpoint store `config` names, checked readable and writable."""
    return open_checkpoint_store(
        config.checkpoints, keep_last=config.keep_checkpoints, credentials_block=config.checkpoint_credentials
    )
