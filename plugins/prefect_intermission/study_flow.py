"""The Prefect flow that runs a pausable Optuna study.

A run creates or loads the study, continues paused trials, asks new ones until
`n_trials` are finished, and on a pause request stores everything and suspends
itself, freeing the machine. Resuming the run (UI button or `intermission resume`)
executes the flow again from the top with the same parameters, and it picks up
where the study stopped: all state comes from Optuna's storage and the checkpoints.
"""

from __future__ import annotations

import logging
import shlex
import sys
from typing import Any, Literal
from uuid import uuid4

import optuna
from prefect import flow, get_run_logger
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun
from prefect.context import FlowRunContext
from prefect.exceptions import Pause
from prefect.flow_runs import suspend_flow_run
from prefect.settings import PREFECT_UI_URL
from prefect.states import Completed, Running, State
from prefect.task_runners import ThreadPoolTaskRunner
from sqlalchemy.engine import make_url

from prefect_intermission._imports import import_objective
from prefect_intermission.checkpoints import CheckpointStore
from prefect_intermission.credentials import CheckpointStorageCredentials
from prefect_intermission.errors import ConfigurationError, IntermissionError
from prefect_intermission.pause_signals import FLOW_PAUSE_KEY_PREFIX, FlowRunPauseWatcher, PauseSignal
from prefect_intermission.scheduler import ScheduleResult, StudySettings, TrialScheduler
from prefect_intermission.study_state import (
    StudyState,
    make_pruner,
    make_sampler,
    open_storage,
)

DEFAULT_STORAGE = "sqlite:///.intermission/studies.db"
DEFAULT_CHECKPOINTS = ".intermission/checkpoints"
MAX_CONCURRENT_TRIALS = 16


def _validate(n_trials: int, max_epochs: int, max_concurrent_trials: int, direction: str) -> None:
    if n_trials < 1:
        raise ConfigurationError(f"n_trials must be >= 1, but got {n_trials=}.")
    if max_epochs < 1:
        raise ConfigurationError(f"max_epochs must be >= 1, but got {max_epochs=}.")
    if not 1 <= max_concurrent_trials <= MAX_CONCURRENT_TRIALS:
        raise ConfigurationError(
            f"max_concurrent_trials must be between 1 and {MAX_CONCURRENT_TRIALS}, "
            f"but got {max_concurrent_trials=}."
        )
    if direction not in ("minimize", "maximize"):
        raise ConfigurationError(f"direction must be 'minimize' or 'maximize', but got {direction=}.")


def _refuse_password_in_storage_url(storage: str) -> None:
    """Flow parameters are shown in plain text in the UI and logs: no password may be in one."""
    try:
        password = make_url(storage).password
    except Exception:
        return  # open_storage explains what a storage URL must look like
    if password:
        raise ConfigurationError(
            "The storage URL contains a password, and flow parameters are shown in plain text "
            "in the Prefect UI and logs. Remove the password from the URL and give it to the "
            "worker instead: PGPASSWORD in the worker's environment, or a ~/.pgpass file."
        )


def open_checkpoint_store(
    checkpoints: str, *, keep_last: int, credentials_block: str | None = None
) -> CheckpointStore:
    """The checkpoint store, with credentials from a saved block (or the AWS environment), checked."""
    storage_options = None
    if credentials_block:
        try:
            block = CheckpointStorageCredentials.load(credentials_block)
        except ValueError as e:
            raise ConfigurationError(
                f"No CheckpointStorageCredentials block named {credentials_block!r} on this "
                f"Prefect server ({e}). Save one first, e.g. "
                f"CheckpointStorageCredentials(...).save({credentials_block!r}), or leave "
                "checkpoint_credentials empty to use the worker's AWS environment."
            ) from e
        storage_options = block.storage_options()
    store = CheckpointStore(checkpoints, keep_last=keep_last, storage_options=storage_options)
    store.verify()
    return store


def load_study_state(
    study_name: str, storage: str, *, seed: int, direction: str, sampler: str, pruner: str
) -> StudyState:
    """Create the study or load it, with the sampler stored by earlier runs."""
    rdb = open_storage(storage)
    study = optuna.create_study(
        study_name=study_name,
        storage=rdb,
        direction=direction,
        sampler=make_sampler(sampler, seed),
        pruner=make_pruner(pruner),
        load_if_exists=True,
    )
    state = StudyState(study)
    stored = state.stored_sampler()
    if stored is not None:
        study.sampler = stored
    else:
        state.save_sampler()
    return state


@flow(
    name="pausable-study",
    flow_run_name="{study_name}",
    task_runner=ThreadPoolTaskRunner(max_workers=MAX_CONCURRENT_TRIALS),
    persist_result=False,
)
def optimize_study(
    study_name: str,
    objective: str,
    n_trials: int = 20,
    max_epochs: int = 10,
    seed: int = 0,
    storage: str = DEFAULT_STORAGE,
    checkpoints: str = DEFAULT_CHECKPOINTS,
    max_concurrent_trials: int = 1,
    direction: Literal["minimize", "maximize"] = "minimize",
    sampler: Literal["tpe", "random"] = "tpe",
    pruner: Literal["median", "none"] = "median",
    keep_checkpoints: int = 2,
    checkpoint_credentials: str | None = None,
) -> dict[str, Any] | State:
    """Run an Optuna study whose trials can pause at any epoch boundary and resume exactly.

    Args:
        study_name: The Optuna study; running the flow again with it continues the study.
        objective: `"package.module:function"`; the function takes `(trial, loop)` and
            trains with `loop` (a `TrialLoop`), returning the trial's value.
        n_trials: Finished trials wanted in total, counting earlier runs.
        max_epochs: Epochs a trial trains at most.
        seed: Seeds the sampler and every trial, so a search can be repeated exactly.
        storage: Optuna RDB storage, a SQLAlchemy URL (`sqlite:///...` or
            `postgresql+psycopg://user@host/db`; the password comes from the worker's
            PGPASSWORD or ~/.pgpass, never from the URL).
        checkpoints: Where trial checkpoints go: a local folder or any fsspec URL, e.g.
            `s3://bucket/prefix`.
        max_concurrent_trials: Trials trained at once in this flow run.
        direction: Whether the objective's value is minimized or maximized.
        sampler: The Optuna sampler, `"tpe"` or `"random"`.
        pruner: The Optuna pruner, `"median"` or `"none"`.
        keep_checkpoints: Checkpoints kept per trial.
        checkpoint_credentials: The name of a saved `CheckpointStorageCredentials` block
            for an `s3://` checkpoint location; empty to use the worker's AWS environment.
    """
    _validate(n_trials, max_epochs, max_concurrent_trials, direction)
    _refuse_password_in_storage_url(storage)
    objective_fn = import_objective(objective)
    store = open_checkpoint_store(
        checkpoints, keep_last=keep_checkpoints, credentials_block=checkpoint_credentials
    )
    state = load_study_state(
        study_name, storage, seed=seed, direction=direction, sampler=sampler, pruner=pruner
    )
    logger = get_run_logger()
    flow_run = _current_flow_run()
    paused = state.paused_trials()
    if paused or state.finished_count():
        logger.info(
            "Continuing study %r: %d/%d trials finished, %d paused trial(s) to continue: %s.",
            study_name, state.finished_count(), n_trials, len(paused),
            ", ".join(f"#{t.number}" for t in paused) or "none",
        )
    signal = PauseSignal()
    scheduler = TrialScheduler(
        state,
        objective_fn,
        checkpoints=store,
        settings=StudySettings(n_trials, max_epochs, seed, max_concurrent_trials, direction),
        pause_signal=signal,
    )
    with FlowRunPauseWatcher(flow_run.id, signal):
        result = scheduler.run()

    if result.failed:
        _record_stop(state, flow_run, "trial-failed", result)
        first = result.failed[0]
        raise IntermissionError(
            f"Trial {first.number} of study {study_name!r} failed: {first.error}. "
            f"Trials {_epochs_text(result)} were paused with their checkpoints. Fix the "
            "objective and run the study again with the same study_name to continue it."
        )
    if signal.is_requested():
        _record_stop(state, flow_run, signal.reason or "unknown", result)
        return _stop_for_pause(flow_run, study_name, result)
    best = state.study.best_trial
    logger.info(
        "Study %r complete: %d trials finished; best trial #%d with value %s and params %s.",
        study_name, result.finished, best.number, best.value, best.params,
    )
    return {
        "study_name": study_name,
        "status": "completed",
        "finished_trials": result.finished,
        "best_trial": best.number,
        "best_value": best.value,
        "best_params": best.params,
    }


def _current_flow_run() -> FlowRun:
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        raise IntermissionError("optimize_study must run as a Prefect flow.")
    return context.flow_run


def _epochs_text(result: ScheduleResult) -> str:
    return ", ".join(
        f"#{n} (after epoch {e})" if e is not None else f"#{n} (not started)"
        for n, e in sorted(result.paused.items())
    ) or "none"


def _record_stop(state: StudyState, flow_run: FlowRun, reason: str, result: ScheduleResult) -> None:
    with state.sampler_lock:
        state.save_sampler()
    state.record_pause(flow_run_id=str(flow_run.id), reason=reason, trials=result.paused)


def _expired_pause(state: State) -> bool:
    """Whether the server failed the run because a pause timed out before we suspended it."""
    return state.is_failed() and "paused and never resumed" in (state.message or "")


def _continue_instruction(study_name: str) -> str:
    """How to continue a study that ran outside a deployment: run it again."""
    if sys.argv and sys.argv[0] not in ("", "-c"):
        command = shlex.join([sys.executable, *sys.argv])
        return f"continue it by running the same command again:\n    {command}"
    return f"continue it by calling optimize_study again with study_name={study_name!r}."


def _stop_for_pause(flow_run: FlowRun, study_name: str, result: ScheduleResult) -> State:
    """Suspend the flow run (or, outside a deployment, end it) once everything is stored."""
    logger = logging.getLogger("prefect_intermission")
    run_logger = get_run_logger()
    summary = f"Study {study_name!r} paused: trials {_epochs_text(result)}; checkpoints and study state stored."
    if flow_run.deployment_id is None:
        message = (
            f"{summary} This run is not part of a deployment, so it cannot be suspended; "
            f"{_continue_instruction(study_name)}"
        )
        run_logger.info(message)
        print(message, file=sys.stderr)
        return Completed(
            name="Paused",
            message=message,
            data={"study_name": study_name, "status": "paused", "paused_trials": result.paused},
        )

    with get_client(sync_client=True) as client:
        current = client.read_flow_run(flow_run.id).state
        if current is not None and (current.is_paused() or _expired_pause(current)):
            # Replace the pause request (or the failure its expiry left) with a
            # suspension of our own that waits, without a timeout, to be resumed.
            client.set_flow_run_state(
                flow_run.id, Running(message="Pause carried out; suspending."), force=True
            )
        elif current is not None and not current.is_running():
            logger.warning(
                "Flow run %s was resumed (%s) before it finished pausing; leaving it to the "
                "new execution.", flow_run.id, current.name,
            )
            raise Pause(f"{summary} Resumed while pausing.")
    ui = PREFECT_UI_URL.value()
    run_logger.info(
        "%s Suspending the flow run; resume it with the UI's Resume button%s or "
        "`intermission resume %s`.",
        summary, f" ({ui}/runs/flow-run/{flow_run.id})" if ui else "", flow_run.id,
    )
    suspend_flow_run(timeout=None, key=f"{FLOW_PAUSE_KEY_PREFIX}{uuid4().hex}")
    raise IntermissionError(f"Flow run {flow_run.id} could not be suspended; it is still running.")
