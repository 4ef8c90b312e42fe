"""How a trial fared in its own flow run, read from Optuna once the run has ended."""

from __future__ import annotations

from optuna.trial import FrozenTrial, TrialState
from prefect.client.schemas.objects import FlowRun

from prefect_intermission._optuna_internals import storage_of, trial_id_of
from prefect_intermission._logging import run_logger
from prefect_intermission._counting import epochs_done
from prefect_intermission.study.attempt import TrialOutcome
from prefect_intermission.study.state import (
    TRIAL_FAILURE_ATTR,
    TRIAL_PAUSED_EPOCH_ATTR,
    TRIAL_STATUS_ATTR,
    StudyState,
)
from prefect_intermission.training.store import CheckpointStore


def outcome_of_trial_run(
    state: StudyState, checkpoints: CheckpointStore, run: FlowRun, *, number: int, trial_id: int
) -> TrialOutcome:
    """How trial `number` fared in its flow run `run`, once the run has ended."""
    frozen = storage_of(state.study).get_trial(trial_id)
    ended = run.state.name if run.state else "gone"
    if run.state is not None and (run.state.is_failed() or run.state.is_crashed()):
        run_logger(__name__).warning(
            "Trial %d: its flow run %s ended %s: %s", number, run.id, ended, run.state.message
        )
    epoch = max(frozen.intermediate_values, default=None)
    if frozen.state in (TrialState.COMPLETE, TrialState.PRUNED):
        kind = "complete" if frozen.state == TrialState.COMPLETE else "pruned"
        several = frozen.values is not None and len(frozen.values) > 1
        outcome = TrialOutcome(
            number, kind, value=None if several else frozen.value, epoch=epoch,
            values=list(frozen.values) if several else None,
        )
    elif frozen.state == TrialState.FAIL:
        failure = frozen.system_attrs.get(TRIAL_FAILURE_ATTR) or {}
        message = failure.get("error") or (run.state.message if run.state else None) or f"its flow run {run.id} ended {ended}"
        outcome = TrialOutcome(number, "failed", epoch=epoch, error=message, study_goes_on=bool(failure.get("study_goes_on")))
    elif frozen.system_attrs.get(TRIAL_STATUS_ATTR) == "paused":
        epoch = frozen.system_attrs.get(TRIAL_PAUSED_EPOCH_ATTR)
        if run.state is not None and run.state.is_failed():
            # Its checkpoints or the study's storage failed: kept paused for the fixed run.
            message = run.state.message or f"its flow run {run.id} ended {ended}"
            outcome = TrialOutcome(number, "failed", epoch=epoch, error=message, kept=True)
        else:
            outcome = TrialOutcome(number, "paused", epoch=epoch)
    else:
        outcome = _interrupted(state, checkpoints, run, frozen)
    return outcome


def _interrupted(state: StudyState, checkpoints: CheckpointStore, run: FlowRun, frozen: FrozenTrial) -> TrialOutcome:
    """A trial run that ended without recording an outcome: never started, cancelled or crashed.

    The study pauses as a whole: the trial continues from its last checkpoint when
    the study is resumed (or run again).
    """
    number = frozen.number
    last = checkpoints.for_trial(state.study.study_name, number).last_epoch()
    if run.start_time is None and frozen.system_attrs.get(TRIAL_STATUS_ATTR) is None:
        state.mark_paused(trial_id_of(frozen), last)  # no worker ever started it
    else:
        run_logger(__name__).warning(
            "Trial %d: its flow run %s ended %s without recording an outcome; the study "
            "pauses, and the trial continues from its checkpoint (%d epochs done) when resumed.",
            number, run.id, run.state.name if run.state else "gone", epochs_done(last),
        )
    return TrialOutcome(number, "paused", epoch=last)
