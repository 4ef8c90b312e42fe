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
from typing import Any
from uuid import UUID, uuid4

from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun
from prefect.context import FlowRunContext
from prefect.states import State
from prefect.task_runners import ThreadPoolTaskRunner

from prefect_intermission._import_path import import_objective
from prefect_intermission.control.run_control import read_flow_run
from prefect_intermission.errors import ConfigurationError, IntermissionError
from prefect_intermission.flows._study_flow import study_flow
from prefect_intermission.flows.run_link import PrefectRunLink
from prefect_intermission.flows.study_run import StudyRun
from prefect_intermission.pausing.reasons import PauseReason
from prefect_intermission.pausing.rules import PauseRule, attach_rules, load_rules
from prefect_intermission.reporting.notify import send_held_notification
from prefect_intermission.reporting.progress import StudyProgress
from prefect_intermission.study.attempt import Objective
from prefect_intermission.study.config import (
    MAX_CONCURRENT_TRIALS,
    BudgetSettings,
    CheckpointSettings,
    ExecutionSettings,
    PausingSettings,
    SearchSettings,
    StudyConfig,
)
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
from prefect_intermission.training.trial_settings import TrainingSettings

@study_flow(
    name=STUDY_FLOW_NAME,
    flow_run_name="{study_name}",
    task_runner=ThreadPoolTaskRunner(max_workers=MAX_CONCURRENT_TRIALS),
    persist_result=False,
    on_completion=[send_held_notification],  # the completion message, once the run is Completed
)
def optimize_study(
    study_name: str,
    objective: str | Callable[..., Any],
    search: SearchSettings = SearchSettings(),
    budget: BudgetSettings = BudgetSettings(),
    training: TrainingSettings = TrainingSettings(),
    checkpointing: CheckpointSettings = CheckpointSettings(),
    pausing: PausingSettings = PausingSettings(),
    execution: ExecutionSettings = ExecutionSettings(),
) -> dict[str, Any] | State:
    """Run an Optuna study whose trials can pause at any epoch boundary and resume exactly.

    Every setting is described in its group (`prefect_intermission.study.config`); a setting
    may also be given on its own, as in earlier releases: `n_trials=30` is `budget={"n_trials": 30}`.

    Args:
        study_name: The Optuna study; running the flow again with it continues the study.
        objective: The function, or its `"package.module:function"`; it takes `(trial, loop)`
            and trains with `loop` (a `TrialLoop`), returning the trial's value. A function
            must be importable (defined with `def` at a module's top level); the run records
            its import path.
        search: What the search optimizes and how it picks parameters: Optuna's sampler, pruner and seed.
        budget: How much the study trains: trials, training time, and failures it tolerates.
        training: How each trial trains: its epochs, when it stops early, and where within an epoch it may
            pause or checkpoint.
        checkpointing: Where trial checkpoints are kept, and how many.
        pausing: What pauses the study besides the UI and the CLI, and whom it tells.
        execution: Where the study is stored and where its trials train.
    """
    config = StudyConfig.build(locals())
    flow_run = _current_flow_run()
    _refuse_subflow(flow_run)
    if _holds_objects(flow_run.parameters):
        # A function (which Prefect cannot store) or a block (stored as a reference that only
        # this run resolves): record the names every other reader of the run's parameters needs.
        _record_parameters(flow_run, config)
    # Not a validator of the settings: Prefect logs a refused parameter's value, and this one holds a password.
    refuse_password_in_storage_url(config.execution.storage)
    objective_fn = import_objective(config.objective)
    if config.execution.trial_deployment:
        check_trial_deployment(config.execution.trial_deployment)
    rules = load_rules(config.pausing.pause_rules)
    policy = load_policy(config.pausing.pause_policy)
    config = config.with_policy_location(policy)
    warn_if_machine_local(config, flow_run)
    first_execution = check_location(config, read_flow_run(flow_run.id))  # before the study can be created
    store = open_store(config)
    state = open_study(config)
    config = config.with_seed(state.seed())  # the study's, drawn if none was given
    state.enqueue(config.search.enqueue)
    signal = PauseSignal()
    this_run = f"flow run {flow_run.id} "
    lease = StudyLease(
        state.engine, config.study_name, f"{this_run}(pid {os.getpid()}, {uuid4().hex[:8]})",
        on_lost=lambda: signal.request(PauseReason.LEASE_LOST),
    )
    # Resumed while an earlier execution of this run still finishes its pause: wait it out.
    lease.acquire(wait_out_owners=this_run)
    progress = StudyProgress(
        config.study_name, n_trials=config.budget.n_trials, max_epochs=config.training.max_epochs,
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
    if config.execution.trial_deployment:
        state.share_sampler(lease.owner)  # trial runs take turns with the stored sampler
        return FlowRunExecutor(
            state, config=config, checkpoints=store, pause_signal=signal, flow_run_id=flow_run_id,
            study_execution=lease.owner, progress=progress,
        )
    attach_rules(progress, config.study_name, rules, signal.request)  # trial runs check their own
    return TaskExecutor(state, objective_fn, checkpoints=store, config=config, pause_signal=signal, progress=progress)


def _holds_objects(parameters: dict[str, Any]) -> bool:
    """Whether the run's stored parameters hold a function or a block where a name belongs."""
    objective = parameters.get("objective")
    if objective is not None and not isinstance(objective, str):
        return True
    return any(
        isinstance(group, dict) and isinstance(group.get(name), dict)
        for group, name in (
            (parameters.get("pausing"), "pause_policy"), (parameters.get("checkpointing"), "checkpoint_credentials")
        )
    )


def _record_parameters(flow_run: FlowRun, config: StudyConfig) -> None:
    """Record the run's configuration as its parameters, names in place of objects, as a Resume
    and `intermission status` read them."""
    with get_client(sync_client=True) as client:
        client.update_flow_run(flow_run.id, parameters=config.model_dump(mode="json"))


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
