"""The Prefect flow that runs a pausable Optuna study.

A run creates or loads the study, continues paused trials, asks new ones until
`n_trials` are finished, and on a pause request stores everything and suspends
itself, freeing the machine. Resuming the run (UI button or `intermission resume`)
executes the flow again from the top with the same parameters, and it picks up
where the study stopped: all state comes from Optuna's storage and the checkpoints.

`optimize_study` validates and sets up; a `StudyRun` (flows/study_run.py) runs.
"""

# No `from __future__ import annotations` here: `optimize_study.serve()` hands the flow to each
# run's process pickled by value (cloudpickle), with only the names its body uses, so
# annotations kept as strings could not be resolved there to validate the run's parameters.

import os
from collections.abc import Callable
from typing import Any, Literal
from uuid import UUID, uuid4

from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun
from prefect.context import FlowRunContext
from prefect.states import State
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import ValidationError

from prefect_intermission._import_path import import_objective
from prefect_intermission.blocks.credentials import CheckpointStorageCredentials
from prefect_intermission.blocks.pause_policy import PausePolicy
from prefect_intermission.control.run_control import read_flow_run
from prefect_intermission.errors import ConfigurationError, IntermissionError
from prefect_intermission.flows.run_link import PrefectRunLink
from prefect_intermission.flows.study_run import StudyRun
from prefect_intermission.pausing.reasons import PauseReason
from prefect_intermission.pausing.rules import PauseRule, attach_rules, load_rules
from prefect_intermission.reporting.notify import send_held_notification
from prefect_intermission.reporting.progress import StudyProgress
from prefect_intermission.study.attempt import Objective
from prefect_intermission.study.config import MAX_CONCURRENT_TRIALS, StudyConfig
from prefect_intermission.study.executors.base import TrialExecutor
from prefect_intermission.study.executors.tasks import TaskExecutor
from prefect_intermission.study.executors.trial_runs import (
    FlowRunExecutor,
    check_trial_deployment,
)
from prefect_intermission.study.flow_runs import STUDY_FLOW_NAME
from prefect_intermission.study.leases import StudyLease
from prefect_intermission.study.location import (
    check_location,
    record_location,
    warn_if_machine_local,
)
from prefect_intermission.study.scheduler import TrialScheduler
from prefect_intermission.study.setup import (
    load_policy,
    open_store,
    open_study,
    refuse_password_in_storage_url,
)
from prefect_intermission.study.state import StudyState
from prefect_intermission.training.pause_signal import PauseSignal
from prefect_intermission.training.store import CheckpointStore

_default = StudyConfig.default


@flow(
    name=STUDY_FLOW_NAME,
    flow_run_name="{study_name}",
    task_runner=ThreadPoolTaskRunner(max_workers=MAX_CONCURRENT_TRIALS),
    persist_result=False,
    on_completion=[send_held_notification],  # the completion message, once the run is Completed
)
def optimize_study(
    study_name: str,
    objective: str | Callable[..., Any],
    n_trials: int = _default("n_trials"),
    max_epochs: int = _default("max_epochs"),
    seed: int | None = _default("seed"),
    storage: str = _default("storage"),
    checkpoints: str = _default("checkpoints"),
    max_concurrent_trials: int = _default("max_concurrent_trials"),
    direction: Literal["minimize", "maximize"] = _default("direction"),
    directions: list[Literal["minimize", "maximize"]] | None = _default("directions"),
    sampler: str | dict[str, Any] = _default("sampler"),
    pruner: str | dict[str, Any] = _default("pruner"),
    allow_search_change: bool = _default("allow_search_change"),
    objective_params: dict[str, Any] | None = None,
    catch: list[str] | None = None,
    max_failed_trials: int = _default("max_failed_trials"),
    timeout: float | None = _default("timeout"),
    callbacks: list[str | dict[str, Any]] | None = None,
    enqueue: list[dict[str, Any]] | None = None,
    keep_checkpoints: int = _default("keep_checkpoints"),
    pause_granularity: Literal["epoch", "step"] = _default("pause_granularity"),
    checkpoint_every_steps: int | None = _default("checkpoint_every_steps"),
    checkpoint_every_seconds: float | None = _default("checkpoint_every_seconds"),
    restart_trials_without_checkpoints: bool = _default("restart_trials_without_checkpoints"),
    pause_policy: PausePolicy | str | None = _default("pause_policy"),
    pause_rules: list[dict[str, Any]] | None = None,
    checkpoint_credentials: CheckpointStorageCredentials | str | None = _default("checkpoint_credentials"),
    trial_deployment: str | None = _default("trial_deployment"),
    patience: int | None = _default("patience"),
) -> dict[str, Any] | State:
    """Run an Optuna study whose trials can pause at any epoch boundary and resume exactly.

    Args:
        study_name: The Optuna study; running the flow again with it continues the study.
        objective: The function, or its `"package.module:function"`; it takes `(trial, loop)`
            and trains with `loop` (a `TrialLoop`), returning the trial's value. A function
            must be importable (defined with `def` at a module's top level); the run records
            its import path.
        n_trials: Finished trials wanted in total, counting earlier runs.
        max_epochs: Epochs a trial trains at most.
        seed: Seeds the sampler and every trial, so a search can be repeated exactly; empty: a
            new study draws one, recorded with it (`intermission status` shows it).
        storage: Optuna RDB storage, a SQLAlchemy URL (`sqlite:///...` or
            `postgresql+psycopg://user@host/db`; the password comes from the worker's
            PGPASSWORD or ~/.pgpass, never from the URL).
        checkpoints: Where trial checkpoints go: a local folder or any fsspec URL, e.g.
            `s3://bucket/prefix`.
        max_concurrent_trials: Trials trained at once in this flow run.
        direction: Whether the objective's value is minimized or maximized.
        directions: Several objectives, e.g. `["minimize", "maximize"]`: the objective
            returns one value per direction, and `loop.end_epoch` takes the first
            objective's metric. Optuna prunes no trial of such a study.
        sampler: The Optuna sampler: `"tpe"`, `"random"`, a class of `optuna.samplers`
            (`"CmaEsSampler"`), a JSON object with its `name` and keyword arguments
            (`{"name": "TPESampler", "multivariate": true}`), or `"package.module:factory"`.
            Stored with the study, so a resume continues its sequence.
        pruner: The Optuna pruner, given the same way: `"median"`, `"none"`, or e.g.
            `{"name": "HyperbandPruner", "min_resource": 1, "max_resource": 27}` (BOHB
            with the TPE sampler).
        allow_search_change: Let a resumed study switch to another sampler or pruner
            than the one it was started with (refused otherwise).
        objective_params: Settings for the objective (a JSON object, e.g. a data path),
            read as `loop.objective_params`; a study keeps the ones it started with.
        catch: Exceptions that fail only their trial, as in `study.optimize(catch=...)`,
            e.g. `["ValueError", "mypackage.errors.BadBatch"]`. A NaN metric or value and
            running out of GPU memory always do; anything else pauses the study.
        max_failed_trials: Failed trials after which this run stops, the trials in flight
            paused: the objective looks broken.
        timeout: Seconds of training (all runs of the study together, pauses not counted)
            after which no new trial starts and the study completes with what it has.
        callbacks: Optuna callbacks called with `(study, trial)` once a trial finishes, as
            `"package.module:factory"` or `{"callback": "package.module:factory", ...}`.
        enqueue: Parameter sets to try first, e.g. `[{"lr": 0.01}]` (each once).
        keep_checkpoints: Last checkpoints kept per trial (its best epoch's is kept besides).
        pause_granularity: `"epoch"`: a pause waits for the end of each trial's epoch;
            `"step"`: it stops at the next `loop.step()`, with a checkpoint holding the
            data position (the loader made with `loop.data_loader(...)`).
        checkpoint_every_steps: Also checkpoint within epochs every this many steps, so
            a crash loses at most that many (needs `loop.data_loader(...)`).
        checkpoint_every_seconds: Also checkpoint within epochs once this many seconds
            passed since the last checkpoint.
        patience: Stop a trial early (it completes with its last value) after this many
            epochs in a row without a better metric; empty: trials train `max_epochs`.
        restart_trials_without_checkpoints: Retrain from the start, instead of failing,
            trials whose checkpoints were deleted.
        pause_policy: A saved `PausePolicy` block (the run form's picker) or its name:
            notifications, resume schedule, pause windows and pause file.
        pause_rules: Conditions checked at every epoch boundary that pause the study, as
            `{"rule": "package.module:factory", **kwargs}` (see `prefect_intermission.pausing.rules`).
        checkpoint_credentials: A saved `CheckpointStorageCredentials` block (the run form's
            picker) or its name, for an `s3://` checkpoint location; empty to use the
            worker's AWS environment.
        trial_deployment: Run each trial as a flow run of this deployment of the
            `pausable-trial` flow (e.g. `"pausable-trial/train-trial"`), so that its work
            pool's workers train trials in parallel; empty: trials run as tasks in this
            flow run. Storage and checkpoints must then be reachable from every worker.
    """
    config = _config(locals())
    flow_run = _current_flow_run()
    _refuse_subflow(flow_run)
    given = {"objective": objective, "pause_policy": pause_policy, "checkpoint_credentials": checkpoint_credentials}
    if objects := [name for name, value in given.items() if value is not None and not isinstance(value, str)]:
        # A function (which Prefect cannot store) or a block (stored as a reference that only
        # this run resolves): record the names every other reader of the run's parameters needs.
        _record_parameters(flow_run, **{name: getattr(config, name) for name in objects})
    config.check()
    refuse_password_in_storage_url(config.storage)
    objective_fn = import_objective(config.objective)
    if config.trial_deployment:
        check_trial_deployment(config.trial_deployment)
    rules = load_rules(config.pause_rules)
    policy = load_policy(config.pause_policy)
    config = config.with_policy_location(policy)
    warn_if_machine_local(config, flow_run)
    first_execution = check_location(config, read_flow_run(flow_run.id))  # before the study can be created
    store = open_store(config)
    state = open_study(config)
    config = config.model_copy(update={"seed": state.seed()})  # the study's, drawn if none was given
    state.enqueue(config.enqueue)
    signal = PauseSignal()
    this_run = f"flow run {flow_run.id} "
    lease = StudyLease(
        state.engine, config.study_name, f"{this_run}(pid {os.getpid()}, {uuid4().hex[:8]})",
        on_lost=lambda: signal.request(PauseReason.LEASE_LOST),
    )
    # Resumed while an earlier execution of this run still finishes its pause: wait it out.
    lease.acquire(wait_out_owners=this_run)
    progress = StudyProgress(
        config.study_name, n_trials=config.n_trials, max_epochs=config.max_epochs,
        finished=state.finished_count(),
    )
    executor = _executor(config, state, store, signal, flow_run.id, lease, progress, objective_fn, rules)
    scheduler = TrialScheduler(
        state, executor, config=config, checkpoints=store, pause_signal=signal, progress=progress,
        flow_run_id=flow_run.id,
    )
    with lease:
        if first_execution:
            record_location(flow_run.id, config, state.uid())
        return StudyRun(
            config, state=state, store=store, signal=signal, link=PrefectRunLink(flow_run), lease=lease,
            policy=policy, scheduler=scheduler, progress=progress,
        ).execute()


def _executor(
    config: StudyConfig,
    state: StudyState,
    store: CheckpointStore,
    signal: PauseSignal,
    flow_run_id: UUID,
    lease: StudyLease,
    progress: StudyProgress,
    objective_fn: Objective,
    rules: list[PauseRule],
) -> TrialExecutor:
    """Where the trials train: flow runs of `trial_deployment`, or tasks of this run."""
    if config.trial_deployment:
        state.share_sampler(lease.owner)  # trial runs take turns with the stored sampler
        return FlowRunExecutor(
            state, config=config, checkpoints=store, pause_signal=signal, flow_run_id=flow_run_id,
            study_execution=lease.owner, progress=progress,
        )
    attach_rules(progress, config.study_name, rules, signal.request)  # trial runs check their own
    return TaskExecutor(state, objective_fn, checkpoints=store, config=config, pause_signal=signal, progress=progress)


def _config(parameters: dict[str, Any]) -> StudyConfig:
    """The study's configuration from the flow's parameters, or a clear error."""
    try:
        lists = {name: parameters[name] or [] for name in ("pause_rules", "catch", "callbacks", "enqueue")}
        return StudyConfig(**{**parameters, **lists, "objective_params": parameters["objective_params"] or {}})
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())
        raise ConfigurationError(f"Invalid study parameters: {problems}.") from e


def _record_parameters(flow_run: FlowRun, **parameters: Any) -> None:
    """Record `parameters` with the run, as a Resume and `intermission status` read them."""
    with get_client(sync_client=True) as client:
        client.update_flow_run(flow_run.id, parameters={**flow_run.parameters, **parameters})


def _refuse_subflow(flow_run: FlowRun) -> None:
    """A study cannot pause inside another flow run: refuse to start as a subflow.

    Prefect suspends only a top-level run of a deployment (its server refuses to suspend
    a subflow), and the study watches its own run's state, not its parent's.
    """
    if flow_run.parent_task_run_id is None:
        return
    raise ConfigurationError(
        "optimize_study cannot run as a subflow of another flow run: Prefect cannot suspend a "
        "subflow, and the study watches its own run, not the parent's, so a pause would leave "
        "the study paused while the pipeline goes on and completes without it. From a pipeline, "
        "start the study as a run of its own deployment: prefect.deployments.run_deployment("
        "\"pausable-study/<deployment>\", parameters={...}, as_subflow=False, timeout=0) returns "
        "at once; without timeout=0 it waits until the study's run has finished, pauses included."
    )


def _current_flow_run() -> FlowRun:
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        raise IntermissionError("optimize_study must run as a Prefect flow.")
    return context.flow_run
