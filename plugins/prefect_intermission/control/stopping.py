"""Stop & Save: ending a study early, keeping what it learnt.

A stop is requested in the study's own storage (`intermission stop`, the `stop-study`
deployment), so it reaches the study run wherever it is: a running one reads it at its
next poll and stops its trials at their next boundary; a suspended one is resumed and
reads it before training. Either way the trials in flight are recorded PRUNED at their
last epoch (their intermediate values show how far they got) and the run completes,
reporting the best trial.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from optuna.trial import TrialState

from prefect_intermission._optuna_internals import storage_of, trial_id_of
from prefect_intermission.errors import IntermissionError
from prefect_intermission.pausing.reasons import PauseReason
from prefect_intermission.pausing.run_states import FLOW_PAUSE_KEY_PREFIX
from prefect_intermission.study.results import STOPPED_ATTR
from prefect_intermission.study.state import (
    STOP_ATTR,
    StudyState,
    open_storage,
    utc_now_iso,
)

#: How often a running study reads its storage for a stop request.
STOP_POLL_SECONDS = 2.0


def request_stop(storage: str, study_name: str, *, by: str) -> None:
    """Record a Stop & Save request in the study's storage."""
    rdb = open_storage(storage)
    try:
        study_id = rdb.get_study_id_from_name(study_name)
    except KeyError as e:
        raise IntermissionError(
            f"No study named {study_name!r} in its storage: nothing to stop."
        ) from e
    rdb.set_study_system_attr(study_id, STOP_ATTR, {"at": utc_now_iso(), "by": by})


def stop_study(target: str, *, by: str) -> str:
    """Stop & Save the study `target` (its name or flow-run id); returns what happens next.

    A running study stops its trials at their next boundary; a suspended one is resumed
    to stop; one paused outside a deployment stops when it is run again.
    """
    from prefect_intermission.control.run_control import read_flow_run, request_resume
    from prefect_intermission.study.flow_runs import latest_runs, study_config_of

    run = latest_runs(target)[0]
    config = study_config_of(run)
    state = run.state
    if state is not None and state.is_final() and state.name != "Paused":
        raise IntermissionError(
            f"Study {config.study_name!r} is {state.name} (flow run {run.id}): there is nothing to stop."
        )
    request_stop(config.execution.storage, config.study_name, by=by)
    if state is not None and state.is_paused() and (state.state_details.pause_key or "").startswith(FLOW_PAUSE_KEY_PREFIX):
        request_resume(run.id)
        return (
            f"Stop & Save requested for study {config.study_name!r}: its suspended run {run.id} is resumed "
            "to record its paused trials pruned and complete with its best trial."
        )
    if state is not None and state.is_paused():  # still pausing: it suspends, then resume it
        return (
            f"Stop & Save requested for study {config.study_name!r}: it is still pausing; once it is "
            f"suspended, resume it (intermission resume {run.id}) and it completes at once."
        )
    if state is not None and state.is_running():
        return (
            f"Stop & Save requested for study {config.study_name!r}: within {STOP_POLL_SECONDS:g} s its "
            "trials stop at their next boundary, are recorded pruned, and the run completes with its best trial."
        )
    latest = read_flow_run(run.id).state
    return (
        f"Stop & Save requested for study {config.study_name!r} ({latest.name if latest else 'not started'}): "
        "the next time it runs, it records its unfinished trials pruned and completes at once."
    )


def stop_trigger(state: StudyState) -> Callable[[], str | None]:
    """A watcher trigger that asks for a stop once one is requested (read every few seconds)."""
    last = 0.0

    def requested() -> str | None:
        nonlocal last
        if time.monotonic() - last < STOP_POLL_SECONDS:
            return None
        last = time.monotonic()
        return PauseReason.STOP if state.stop_request() is not None else None

    return requested


def prune_unfinished(state: StudyState) -> dict[int, Any]:
    """Record every unfinished trial PRUNED at its last epoch; return each one's value."""
    pruned = {}
    for trial in state.unfinished_trials():
        storage_of(state.study).set_trial_system_attr(trial_id_of(trial), STOPPED_ATTR, True)
        with state.sampler_lock:
            frozen = state.study.tell(trial.number, state=TrialState.PRUNED)
            state.save_sampler()
        pruned[trial.number] = frozen.value
    return pruned


def is_stopping(state: StudyState, reason: str | None) -> bool:
    """Whether this execution ends the study early (asked now, or before it started)."""
    return reason == PauseReason.STOP or state.stop_request() is not None


