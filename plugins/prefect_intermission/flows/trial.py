"""The Prefect flow that trains one trial of a study on whichever worker picks it up.

A `pausable-study` run started with `trial_deployment` launches one run of this flow
per trial attempt (see `trial_runs`). The run claims its trial, so that no two
executions ever train it at once, continues it from its checkpoint or starts it,
and stops at the next epoch boundary, checkpoint stored, as soon as the study's own
flow run is paused (the UI, `intermission pause`, a pause window...), ends, or loses
the execution that launched it. Its outcome is recorded in Optuna, where the study
run reads it.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Literal
from uuid import UUID, uuid4

from prefect import flow, get_run_logger
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.context import FlowRunContext
from prefect.states import Completed, Failed, Running, State
from optuna.trial import TrialState

from prefect_intermission._import_path import import_objective
from prefect_intermission._threads import ContextThread
from prefect_intermission.training.checkpoints import CheckpointStore
from prefect_intermission.errors import IntermissionError
from prefect_intermission.study.leases import StudyLease, trial_claim_owner_prefix, trial_claim_resource
from prefect_intermission.pausing.reasons import pause_reason_of_state
from prefect_intermission.pausing.signal import PauseSignal
from prefect_intermission.pausing.watcher import pausing_state, poll_seconds_from_env
from prefect_intermission.flows.study import load_study_state, open_checkpoint_store
from prefect_intermission.study.state import TRIAL_PAUSED_EPOCH_ATTR, TRIAL_STATUS_ATTR, StudyState
from prefect_intermission.study.attempt import reattach_trial, run_trial_attempt

logger = logging.getLogger(__name__)


def trial_claim(
    state: StudyState, number: int, owner: str, *, on_lost: Callable[[], None] | None = None
) -> StudyLease:
    """The lease that lets one execution at a time train trial `number` of the study."""
    return StudyLease(state.engine, trial_claim_resource(state.study.study_name, number), owner, on_lost=on_lost)


class StudyRunWatcher:
    """Background thread that stops a trial when the study's run pauses or stops.

    It sets the signal when the study's flow run is PAUSED (however it was paused),
    ends or is cancelled, or when the study's lease is no longer held by the
    execution that launched this trial (that execution died). Pausing this trial's
    own flow run (the UI's button on it) pauses the whole study.
    """

    def __init__(
        self,
        signal: PauseSignal,
        *,
        trial_run_id: UUID,
        study_run_id: UUID,
        study_lease: StudyLease,
        study_execution: str,
        poll_seconds: float | None = None,
    ) -> None:
        self.signal = signal
        self.trial_run_id = trial_run_id
        self.study_run_id = study_run_id
        self.study_lease = study_lease
        self.study_execution = study_execution
        self.poll_seconds = poll_seconds if poll_seconds is not None else poll_seconds_from_env()
        self.own_run_was_paused = False
        self._thread = ContextThread(self._watch, name=f"intermission-study-watcher-{trial_run_id}")

    def __enter__(self) -> StudyRunWatcher:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._thread.stop()

    def _watch(self) -> None:
        with get_client(sync_client=True) as client:
            while not self._thread.stopping.is_set() and not self.signal.is_requested():
                try:
                    reason = self._stop_reason(client)
                except Exception:  # a flaky API or database must not stop training
                    logger.debug("Could not read the study's run or lease", exc_info=True)
                    reason = None
                if reason is not None:
                    logger.info("Pause requested (%s): pausing at the next epoch boundary.", reason)
                    self.signal.request(reason)
                    return
                self._thread.stopping.wait(self.poll_seconds)

    def _stop_reason(self, client: SyncPrefectClient) -> str | None:
        own = client.read_flow_run(self.trial_run_id).state
        study = client.read_flow_run(self.study_run_id).state
        if pause_reason_of_state(own) is not None:
            self._forward_pause(client, study)
        if (reason := pause_reason_of_state(study)) is not None:
            return reason
        if study is None or not study.is_running():
            return f"study run {study.name if study else 'gone'}"
        holder = self.study_lease.holder()
        if holder is None or holder[0] != self.study_execution or holder[1] < time.time():
            return "study execution gone"
        return None

    def _forward_pause(self, client: SyncPrefectClient, study: Any) -> None:
        """A pause of this trial's run pauses the study (the unit a resume continues)."""
        # Prefect's engine remembers that this run was suspended and would end it
        # Suspended, not with its outcome: the flow reports its final state itself.
        self.own_run_was_paused = True
        if study is not None and study.is_running():
            study_run = client.read_flow_run(self.study_run_id)
            client.set_flow_run_state(
                self.study_run_id,
                pausing_state(reason="a trial's run was paused", deployment=study_run.deployment_id is not None),
                force=True,
            )
        client.set_flow_run_state(
            self.trial_run_id, Running(message="The study pauses as a whole."), force=True
        )


@flow(name="pausable-trial", flow_run_name="{study_name}-trial-{trial_number}", persist_result=False)
def train_trial(
    study_name: str,
    objective: str,
    trial_number: int,
    study_flow_run_id: UUID,
    study_execution: str,
    max_epochs: int = 10,
    seed: int = 0,
    storage: str = "sqlite:///.intermission/studies.db",
    checkpoints: str = ".intermission/checkpoints",
    checkpoint_credentials: str | None = None,
    keep_checkpoints: int = 2,
    direction: Literal["minimize", "maximize"] = "minimize",
    sampler: Literal["tpe", "random"] = "tpe",
    pruner: Literal["median", "none"] = "median",
) -> dict[str, Any] | State:
    """Train one trial of a `pausable-study` run until it finishes or the study pauses.

    Launched by the study run (its `trial_deployment` parameter); the parameters are
    the study's. Ends Completed when the trial finished, Completed named "Paused"
    when it stopped for a pause (checkpoint stored, the trial left RUNNING in Optuna
    and marked paused), and Failed when the objective failed.

    Args:
        study_name: The Optuna study.
        objective: `"package.module:function"`, as for the study.
        trial_number: The trial to train; the study run asked it.
        study_flow_run_id: The study's flow run, whose pauses this run follows.
        study_execution: The owner of the study's lease that launched this run.
        max_epochs: Epochs a trial trains at most.
        seed: The study's seed (each trial's seed derives from it).
        storage: The study's Optuna RDB storage, shared by every worker.
        checkpoints: Where trial checkpoints go, shared by every worker.
        checkpoint_credentials: A `CheckpointStorageCredentials` block name, or empty.
        keep_checkpoints: Checkpoints kept per trial.
        direction: Whether the objective's value is minimized or maximized.
        sampler: The study's sampler, `"tpe"` or `"random"`.
        pruner: The study's pruner, `"median"` or `"none"`.
    """
    run_logger = get_run_logger()
    objective_fn = import_objective(objective)
    store = open_checkpoint_store(
        checkpoints, keep_last=keep_checkpoints, credentials_block=checkpoint_credentials
    )
    state = load_study_state(
        study_name, storage, seed=seed, direction=direction, sampler=sampler, pruner=pruner
    )
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        raise IntermissionError("train_trial must run as a Prefect flow.")
    trial_run_id = context.flow_run.id
    owner = f"{trial_claim_owner_prefix(trial_run_id)}(pid {os.getpid()}, {uuid4().hex[:8]})"
    state.share_sampler(owner)
    signal = PauseSignal()
    study_lease = StudyLease(state.engine, study_name, study_execution)
    watcher = StudyRunWatcher(
        signal, trial_run_id=trial_run_id, study_run_id=study_flow_run_id,
        study_lease=study_lease, study_execution=study_execution,
    )
    claim = trial_claim(state, trial_number, owner, on_lost=lambda: signal.request("lease-lost"))
    with watcher:
        while not claim.try_acquire():  # an earlier execution still trains it: wait for its stop
            if signal.wait(1.0):
                return Completed(
                    name="Paused",
                    message=f"Trial {trial_number} was not started ({signal.reason}): "
                    f"{claim.holder()} still held it.",
                )
        with claim:
            trial_id = state.study._storage.get_trial_id_from_study_id_trial_number(
                state.study._study_id, trial_number
            )
            frozen = state.study._storage.get_trial(trial_id)
            if frozen.state != TrialState.RUNNING:
                run_logger.info("Trial %d is already %s; nothing to train.", trial_number, frozen.state.name)
                return Completed(name=f"Trial {frozen.state.name.title()}", message="Nothing to train.")
            if signal.is_requested():
                return _paused_before_start(state, store, trial_number, signal.reason)
            outcome = run_trial_attempt(
                state, reattach_trial(state, trial_id), objective_fn,
                checkpoints=store, max_epochs=max_epochs, study_seed=seed, pause_signal=signal,
                direction=direction, hold_sampler_while_suggesting=True,
            )
    if outcome.state == "failed":
        message = f"Trial {trial_number} of study {study_name!r} failed: {outcome.error}"
        _report_if_suspended(watcher, trial_run_id, Failed(message=message))
        raise IntermissionError(message)
    if outcome.state == "paused":
        return _report_if_suspended(watcher, trial_run_id, Completed(
            name="Paused",
            message=f"Trial {trial_number} paused after epoch {outcome.epoch} ({signal.reason}); checkpoint stored.",
        ))
    result = {"trial": trial_number, "state": outcome.state, "value": outcome.value, "epoch": outcome.epoch}
    _report_if_suspended(watcher, trial_run_id, Completed(message=f"Trial {trial_number} {outcome.state}."))
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
    trial_id = state.study._storage.get_trial_id_from_study_id_trial_number(state.study._study_id, number)
    attrs = state.study._storage.get_trial_system_attrs(trial_id)
    if attrs.get(TRIAL_STATUS_ATTR) is None:
        state.mark_paused(trial_id, store.for_trial(state.study.study_name, number).last_epoch())
    epoch = state.study._storage.get_trial_system_attrs(trial_id).get(TRIAL_PAUSED_EPOCH_ATTR)
    return Completed(name="Paused", message=f"Trial {number} paused before training ({reason}); after epoch {epoch}.")
