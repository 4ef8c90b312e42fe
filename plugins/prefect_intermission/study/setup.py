"""Setting a study up before any work: its storage, its checkpoint store, its pause policy.

Each step refuses bad input with a message that says what is wrong and how to fix
it, and changes nothing already stored.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

import optuna
from sqlalchemy.engine import make_url

from prefect_intermission._logging import run_logger
from prefect_intermission._signing import signing_key
from prefect_intermission.blocks.credentials import CheckpointStorageCredentials
from prefect_intermission.blocks.pause_policy import PausePolicy
from prefect_intermission.errors import ConfigurationError
from prefect_intermission.study.config import StudyConfig
from prefect_intermission.study.search import SearchSpec, describe_spec, make_pruner, make_sampler, normalize
from prefect_intermission.study.state import SamplerRefused, StudyState, open_storage
from prefect_intermission.training.store import CheckpointStore


_PASSWORD_QUERY_KEYS = frozenset({"password", "sslpassword"})
#: The seed of a study created before seeds were recorded: the default then.
LEGACY_DEFAULT_SEED = 0


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
    study_name: str,
    storage: str,
    *,
    seed: int | None,
    direction: str = "minimize",
    directions: list[str] | None = None,
    sampler: SearchSpec = "tpe",
    pruner: SearchSpec = "median",
    objective_params: dict[str, Any] | None = None,
    allow_search_change: bool = False,
) -> StudyState:
    """Create the study or load it, with the sampler stored by earlier runs.

    An existing study must have the same directions, and (unless
    `allow_search_change`) the same sampler and pruner settings and the same
    `objective_params` as when it was created; otherwise nothing is changed and a
    `ConfigurationError` says what differs. A stored sampler that is malformed or
    whose signature does not match is never unpickled: the refusal is recorded with
    the study and said on the run's log, and a new sampler, seeded from the study's seed and
    the number of trials so far, takes over.

    The study's seed (`StudyState.seed()`) is recorded when it is created: `seed`, or one
    drawn at random when `seed` is None. A later run leaves `seed` None or gives the same one.
    """
    rdb = open_storage(storage)
    wanted = list(directions) if directions else [direction]
    _refuse_other_directions(rdb, study_name, wanted)
    new_seed = seed if seed is not None else secrets.randbelow(2**31)  # used if the study is new
    study = optuna.create_study(
        study_name=study_name,
        storage=rdb,
        directions=wanted,
        sampler=make_sampler(sampler, new_seed),
        pruner=make_pruner(pruner),
        load_if_exists=True,
    )
    state = StudyState(study, engine=rdb.engine, signing_key=signing_key())
    search_changed = _check_recorded_settings(
        state, sampler=sampler, pruner=pruner, objective_params=objective_params or {},
        allow_search_change=allow_search_change, seed=seed, new_seed=new_seed,
    )
    seed = state.seed()
    try:
        stored = None if search_changed else state.stored_sampler()
    except SamplerRefused as refused:
        run_logger(__name__).warning(
            "Study %r: %s; it was not loaded. Continuing with a new sampler.", study_name, refused
        )
        state.record_refusal("sampler", str(refused))
        stored = None
    if stored is not None:
        study.sampler = stored
    else:
        # A new sampler mid-study makes its own draws, not a repeat of the first ones.
        study.sampler = make_sampler(sampler, seed + len(study.trials))
        state.save_sampler()
    return state


def _refuse_other_directions(rdb: optuna.storages.RDBStorage, study_name: str, wanted: list[str]) -> None:
    """An existing study keeps its directions: refuse a run that asks for others."""
    try:
        study_id = rdb.get_study_id_from_name(study_name)
    except KeyError:
        return
    stored = [d.name.lower() for d in rdb.get_study_directions(study_id)]
    if stored != wanted:
        raise ConfigurationError(
            f"Study {study_name!r} was created with direction(s) {stored}, but this run asks for "
            f"{wanted}. Run it with the study's direction(s) (the `direction` or `directions` "
            "parameter), or use a new study_name for a study in the other direction(s)."
        )


def _check_recorded_settings(
    state: StudyState,
    *,
    sampler: SearchSpec,
    pruner: SearchSpec,
    objective_params: dict[str, Any],
    allow_search_change: bool,
    seed: int | None,
    new_seed: int,
) -> bool:
    """Record the study's search and objective settings and its seed, or refuse a run whose
    settings differ from the recorded ones. Returns whether the search changed (as allowed)."""
    recorded = state.recorded_settings()
    settings = {
        "sampler": normalize(sampler, "sampler"),
        "pruner": normalize(pruner, "pruner"),
        "objective_params": objective_params,
    }
    if recorded is None:
        state.record_settings({**settings, "seed": new_seed})
        return False
    name = state.study.study_name
    # Created before seeds were recorded, when the default was 0: that one, unless the run says.
    study_seed = recorded.get("seed", LEGACY_DEFAULT_SEED if seed is None else seed)
    if seed is not None and seed != study_seed:
        raise ConfigurationError(
            f"Study {name!r} was started with seed {study_seed}, but this run gives seed={seed}. "
            "A resume continues with the study's seed: leave seed empty (or give that one), or use "
            "a new study_name for another seed. Nothing was changed."
        )
    settings["seed"] = study_seed
    if recorded.get("objective_params", {}) != objective_params:
        raise ConfigurationError(
            f"Study {name!r} was started with objective_params {json.dumps(recorded.get('objective_params', {}))}, "
            f"but this run gives {json.dumps(objective_params)}. Its trials so far were trained with "
            "the first ones: run it with those, or use a new study_name for other settings. "
            "Nothing was changed."
        )
    changed = [kind for kind in ("sampler", "pruner") if recorded.get(kind) != settings[kind]]
    if not changed:
        if "seed" not in recorded:  # every check passed: record the seed it continues with
            state.record_settings({**recorded, "seed": study_seed})
        return False
    what = " and ".join(
        f"{kind} {describe_spec(recorded[kind], kind)} (this run: {describe_spec(settings[kind], kind)})"  # type: ignore[arg-type]
        for kind in changed
    )
    if not allow_search_change:
        raise ConfigurationError(
            f"Study {name!r} searches with {what}. A resume continues the stored search; run it "
            "with the same settings, or with allow_search_change=true to switch (a new sampler "
            "starts its own sequence). Nothing was changed."
        )
    run_logger(__name__).warning("Study %r: switching, as allowed, from %s.", name, what)
    state.record_settings(settings)
    return "sampler" in changed


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
        config.study_name, config.execution.storage, seed=config.search.seed, directions=config.search.study_directions,
        sampler=config.search.sampler, pruner=config.search.pruner, objective_params=config.training.objective_params,
        allow_search_change=config.search.allow_search_change,
    )


def open_store(config: StudyConfig) -> CheckpointStore:
    """The checkpoint store `config` names, checked readable and writable."""
    return open_checkpoint_store(
        config.checkpointing.checkpoints, keep_last=config.checkpointing.keep_checkpoints, credentials_block=config.checkpointing.checkpoint_credentials
    )
