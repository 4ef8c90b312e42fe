"""The Prefect flow that trains one trial of a study on whichever worker picks it up.

A `pausable-study` run started with `trial_deployment` launches one run of this flow
per trial attempt (see `study/executors/trial_runs.py`). The run claims its trial, so
that no two executions ever train it at once, continues it from its checkpoint or
starts it, and stops at the next epoch boundary, checkpoint stored, as soon as the
study is paused (the UI, `intermission pause`, a pause window...: the study run posts a
notice in the study's database), its run ends, or it loses the execution that launched it. The study's pause rules are checked here, at
each epoch boundary, so a rule pauses at the same epoch as in a study training its
trials itself. Its outcome is recorded in Optuna, where the study run reads it.
"""

# No `from __future__ import annotations` here, as in flows/study.py: a served flow reaches its
# run's process pickled by value, where annotations kept as strings could not be resolved.

import logging
import os
from collections.abc import Callable
from uuid import UUID, uuid4

from optuna.trial import TrialState
from prefect import flow, get_run_logger
from prefect.client.orchestration import get_client
from prefect.context import FlowRunContext
from prefect.states import Completed, Failed, State

from prefect_intermission._counting import epochs_done
from prefect_intermission._import_path import import_objective
from prefect_intermission._optuna_internals import storage_of, study_id_of
from prefect_intermission.errors import IntermissionError
from prefect_intermission.flows.process_exit import exit_at_once
from prefect_intermission.pausing.notices import PauseNotices
from prefect_intermission.pausing.reasons import PauseReason
from prefect_intermission.pausing.rules import attach_rules, load_rules
from prefect_intermission.pausing.run_states import (
    pause_reason_of_state,
    paused_trial_state,
    stopped_trial_state,
)
from prefect_intermission.reporting.progress import StudyProgress
from prefect_intermission.study.attempt import (
    TrialOutcome,
    AttemptSettings,
    run_trial_attempt,
)
from prefect_intermission.study.config import StudyConfig
from prefect_intermission.study.flow_runs import TRIAL_FLOW_NAME
from prefect_intermission.study.leases import (
    StudyLease,
    trial_claim_owner_prefix,
    trial_claim_resource,
)
from prefect_intermission.study.resuming import reattach_trial
from prefect_intermission.study.setup import open_store, open_study
from prefect_intermission.study.state import (
    TRIAL_PAUSED_EPOCH_ATTR,
    TRIAL_STATUS_ATTR,
    StudyState,
)
from prefect_intermission.study.study_run_watcher import StudyRunWatcher
from prefect_intermission.training.pause_signal import PauseSignal
from prefect_intermission.training.store import CheckpointStore

logger = logging.getLogger(__name__)


def trial_claim(
    state: StudyState, number: int, owner: str, *, on_lost: Callable[[], None] | None = None
) -> StudyLease:
    """The lease that lets one execution at a time train trial `number` of the study."""
    return StudyLease(state.engine, trial_claim_resource(state.study.study_name, number), owner, on_lost=on_lost)


@flow(name=TRIAL_FLOW_NAME, persist_result=False)  # its launcher names each run
def train_trial(
    config: StudyConfig,
    trial_number: int,
    study_flow_run_id: UUID,
    study_execution: str,
    study_started_at: float | None = None,
) -> dict[str, object] | State:
    """Train one trial of a `pausable-study` run until it finishes or the study pauses.

    Launched by the study run (its `trial_deployment` parameter). Ends Completed when
    the trial finished, Completed named "Paused" when it stopped for a pause
    (checkpoint stored, the trial left RUNNING in Optuna and marked paused), and
    Failed when the objective failed.

    Args:
        config: The study's configuration, as its run built it.
        trial_number: The trial to train; the study run asked it.
        study_flow_run_id: The study's flow run, whose pauses this run follows.
        study_execution: The owner of the study's lease that launched this run.
        study_started_at: When that execution started (epoch seconds): pause rules count from it.
    """
    objective_fn = import_objective(config.objective)
    store = open_store(config)
    state = open_study(config)
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        raise IntermissionError("train_trial must run as a Prefect flow.")
    trial_run_id = context.flow_run.id
    owner = f"{trial_claim_owner_prefix(trial_run_id)}(pid {os.getpid()}, {uuid4().hex[:8]})"
    state.share_sampler(owner)
    signal = PauseSignal()
    watcher = StudyRunWatcher(
        signal, trial_run_id=trial_run_id, study_run_id=study_flow_run_id,
        study_lease=StudyLease(state.engine, config.study_name, study_execution),
        study_execution=study_execution, notices=PauseNotices(state.engine, config.study_name),
    )
    progress = StudyProgress(config.study_name, n_trials=config.budget.n_trials, max_epochs=config.training.max_epochs, finished=0)
    attach_rules(progress, config.study_name, load_rules(config.pausing.pause_rules), watcher.pause_study,
                 started_at=study_started_at)
    claim = trial_claim(state, trial_number, owner, on_lost=lambda: signal.request(PauseReason.LEASE_LOST))
    with watcher:
        while not claim.try_acquire():  # an earlier execution still trains it: wait for its stop
            if signal.wait(1.0):
                return paused_trial_state(
                    f"Trial {trial_number} was not started ({signal.reason}): {claim.holder()} still held it."
                )
        with claim:
            outcome = _train(config, state, store, trial_number, objective_fn, signal, progress)
    if isinstance(outcome, State):
        return outcome
    return _final_state(watcher, trial_run_id, config.study_name, outcome, signal)


def _train(
    config: StudyConfig,
    state: StudyState,
    store: CheckpointStore,
    number: int,
    objective_fn: Callable[..., float],
    signal: PauseSignal,
    progress: StudyProgress,
) -> TrialOutcome | State:
    """Train the claimed trial, unless it is finished already or the study paused meanwhile."""
    storage = storage_of(state.study)
    trial_id = storage.get_trial_id_from_study_id_trial_number(study_id_of(state.study), number)
    frozen = storage.get_trial(trial_id)
    if frozen.state != TrialState.RUNNING:
        get_run_logger().info("Trial %d is already %s; nothing to train.", number, frozen.state.name)
        return Completed(name=f"Trial {frozen.state.name.title()}", message="Nothing to train.")
    if signal.is_requested():
        return _paused_before_start(state, store, number, signal.reason)
    return run_trial_attempt(
        state, reattach_trial(state, trial_id), objective_fn, checkpoints=store, pause_signal=signal,
        progress=progress, hold_sampler_while_suggesting=True, settings=AttemptSettings.of(config),
    )


def _final_state(
    watcher: StudyRunWatcher,
    trial_run_id: UUID,
    study_name: str,
    outcome: TrialOutcome,
    signal: PauseSignal,
) -> dict[str, object] | State:
    """The run's result for the trial's outcome (a failure raises)."""
    number = outcome.number
    if outcome.state == "failed":
        message = f"Trial {number} of study {study_name!r} failed: {outcome.error}"
        _report_if_suspended(watcher, trial_run_id, Failed(message=message))
        raise IntermissionError(message)
    if outcome.state == "paused" and outcome.stopping:
        return _report_if_suspended(watcher, trial_run_id, stopped_trial_state(
            outcome.message or f"Trial {number} stopped by Stop & Save."
        ))
    if outcome.state == "paused":
        paused = _report_if_suspended(watcher, trial_run_id, paused_trial_state(
            f"{outcome.message or f'Trial {number} paused.'} Why: {signal.reason}."
        ))
        exit_at_once()  # once the engine has reported this state: the trial's machine is free
        return paused
    result = {"trial": number, "state": outcome.state, "value": outcome.value, "epoch": outcome.epoch}
    _report_if_suspended(watcher, trial_run_id, Completed(message=f"Trial {number} {outcome.state}."))
    return result


def _report_if_suspended(watcher: StudyRunWatcher, trial_run_id: UUID, state: State) -> State:
    """Set the run's final state from here when the engine would report it Suspended instead
    (the run was paused from outside, e.g. the UI's button on it)."""
    with get_client(sync_client=True) as client:
        if watcher.own_run_was_paused or pause_reason_of_state(client.read_flow_run(trial_run_id).state):
            client.set_flow_run_state(trial_run_id, state, force=True)
    return state


def _paused_before_start(state: StudyState, store: CheckpointStore, number: int, reason: str | None) -> State:
    """The study paused before this run trained anything: the trial stays where it was.

    A new trial is marked paused before its first epoch; one that a crash cut off
    stays marked as interrupted, so its continuation is recorded as one after a crash.
    """
    trial_id = storage_of(state.study).get_trial_id_from_study_id_trial_number(study_id_of(state.study), number)
    attrs = storage_of(state.study).get_trial_system_attrs(trial_id)
    if attrs.get(TRIAL_STATUS_ATTR) is None:
        state.mark_paused(trial_id, store.for_trial(state.study.study_name, number).last_epoch())
    epoch = storage_of(state.study).get_trial_system_attrs(trial_id).get(TRIAL_PAUSED_EPOCH_ATTR)
    done = epochs_done(epoch)
    return paused_trial_state(f"Trial {number} paused before training ({reason}): {done} epochs done.")
