"""The Prefect flow that runs a pausable Optuna study.

A run creates or loads the study, continues paused trials, asks new ones until
`n_trials` are finished, and on a pause request stores everything and suspends
itself, freeing the machine. Resuming the run (UI button or `intermission resume`)
executes the flow again from the top with the same parameters, and it picks up
where the study stopped: all state comes from Optuna's storage and the checkpoints.
"""

from __future__ import annotations

import logging
import os
import shlex
import sys
from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal, NoReturn
from uuid import UUID, uuid4

import optuna
from prefect import flow, get_run_logger
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun
from prefect.context import FlowRunContext
from prefect.events.worker import EventsWorker
from prefect.exceptions import Pause
from prefect.flow_runs import suspend_flow_run
from prefect.logging.handlers import APILogWorker
from prefect.settings import PREFECT_UI_URL
from prefect.states import Completed, Running, State, Suspended
from prefect.task_runners import ThreadPoolTaskRunner
from sqlalchemy.engine import make_url

from prefect_intermission._faults import fault_point
from prefect_intermission._import_path import import_objective
from prefect_intermission._redaction import redact_arguments
from prefect_intermission._signing import signing_key
from prefect_intermission.training.checkpoints import CheckpointStore
from prefect_intermission.blocks.credentials import CheckpointStorageCredentials
from prefect_intermission.errors import ConfigurationError, IntermissionError
from prefect_intermission.pausing.run_control import schedule_resume
from prefect_intermission.pausing.interrupts import PauseOnSignals, StopNow
from prefect_intermission.pausing.keys import PauseKeys
from prefect_intermission.reporting.notify import notify
from prefect_intermission.blocks.pause_policy import PausePolicy
from prefect_intermission.pausing.reasons import FLOW_PAUSE_KEY_PREFIX, pause_reason_of_state
from prefect_intermission.pausing.signal import PauseSignal
from prefect_intermission.pausing.triggers import pause_file_trigger, pause_window_trigger, wait_until_removed
from prefect_intermission.pausing.watcher import FlowRunPauseWatcher
from prefect_intermission.study.scheduler import ScheduleResult, StudySettings, TrialScheduler
from prefect_intermission.pausing.holds import TrialHolds
from prefect_intermission.study.trial_runs import TrialRunScheduler, TrialRunSettings, check_trial_deployment
from prefect_intermission.study.attempt import Objective
from prefect_intermission.reporting.artifacts import ArtifactReporter
from prefect_intermission.reporting.events import emit_study_event
from prefect_intermission.study.leases import StudyLease
from prefect_intermission.reporting.pause_summary import pause_summary
from prefect_intermission.reporting.progress import StudyProgress
from prefect_intermission.reporting.resources import measure_resources
from prefect_intermission.pausing.rules import PauseRule, RuleChecker, load_rules
from prefect_intermission.reporting.terminal import TerminalProgress
from prefect_intermission.study.state import (
    SamplerRefused,
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


_PASSWORD_QUERY_KEYS = frozenset({"password", "sslpassword"})


def _refuse_password_in_storage_url(storage: str) -> None:
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
        logging.getLogger(__name__).warning(
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
    restart_trials_without_checkpoints: bool = False,
    pause_policy: str | None = None,
    pause_rules: list[dict[str, Any]] | None = None,
    checkpoint_credentials: str | None = None,
    trial_deployment: str | None = None,
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
        restart_trials_without_checkpoints: Retrain from the start, instead of failing,
            trials whose checkpoints were deleted.
        pause_policy: The name of a `PausePolicy` block: notifications, resume schedule,
            pause windows, pause file, and checkpoint location.
        pause_rules: Conditions checked at every epoch boundary that pause the study, as
            `{"rule": "package.module:factory", **kwargs}` (see `prefect_intermission.pausing.rules`).
        checkpoint_credentials: The name of a saved `CheckpointStorageCredentials` block
            for an `s3://` checkpoint location; empty to use the worker's AWS environment.
        trial_deployment: Run each trial as a flow run of this deployment of the
            `pausable-trial` flow (e.g. `"pausable-trial/train-trial"`), so that its work
            pool's workers train trials in parallel; empty: trials run as tasks in this
            flow run. Storage and checkpoints must then be reachable from every worker.
    """
    _validate(n_trials, max_epochs, max_concurrent_trials, direction)
    _refuse_password_in_storage_url(storage)
    objective_fn = import_objective(objective)
    if trial_deployment:
        check_trial_deployment(trial_deployment)
    rules = load_rules(pause_rules or [])
    policy = _load_policy(pause_policy)
    if policy is not None and policy.checkpoints:
        checkpoints, keep_checkpoints = policy.checkpoints, policy.keep_checkpoints
    store = open_checkpoint_store(
        checkpoints, keep_last=keep_checkpoints, credentials_block=checkpoint_credentials
    )
    state = load_study_state(
        study_name, storage, seed=seed, direction=direction, sampler=sampler, pruner=pruner
    )
    flow_run = _current_flow_run()
    signal = PauseSignal()
    this_run = f"flow run {flow_run.id} "
    lease = StudyLease(
        state.engine,
        study_name,
        f"{this_run}(pid {os.getpid()}, {uuid4().hex[:8]})",
        on_lost=lambda: signal.request("lease-lost"),
    )
    # Resumed while an earlier execution of this run still finishes its pause: wait it out.
    lease.acquire(wait_out_owners=this_run)
    trial_runs = None
    if trial_deployment:
        state.share_sampler(lease.owner)
        trial_runs = TrialRunSettings(
            deployment=trial_deployment,
            study_execution=lease.owner,
            parameters={
                "study_name": study_name, "objective": objective, "max_epochs": max_epochs,
                "seed": seed, "storage": storage, "checkpoints": checkpoints,
                "checkpoint_credentials": checkpoint_credentials,
                "keep_checkpoints": keep_checkpoints, "direction": direction,
                "sampler": sampler, "pruner": pruner,
            },
        )
    with lease:
        return _run_study(
            state, objective_fn, store, signal, flow_run, lease,
            StudySettings(n_trials, max_epochs, seed, max_concurrent_trials, direction),
            restart_missing=restart_trials_without_checkpoints,
            policy=policy,
            rules=rules,
            trial_runs=trial_runs,
        )


def _load_policy(name: str | None) -> PausePolicy | None:
    if not name:
        return None
    try:
        return PausePolicy.load(name)
    except ValueError as e:
        raise ConfigurationError(
            f"No usable pause policy block named {name!r}: {e}. Create it on the Prefect UI's "
            f"Blocks page (type 'Pause Policy') or with PausePolicy(...).save({name!r})."
        ) from e


def _run_study(
    state: StudyState,
    objective_fn: Objective,
    store: CheckpointStore,
    signal: PauseSignal,
    flow_run: FlowRun,
    lease: StudyLease,
    settings: StudySettings,
    *,
    restart_missing: bool,
    policy: PausePolicy | None,
    rules: list[PauseRule],
    trial_runs: TrialRunSettings | None = None,
) -> dict[str, Any] | State:
    """Continue and run trials while holding the study's lease, then complete or pause."""
    logger = get_run_logger()
    study_name, n_trials = state.study.study_name, settings.n_trials
    progress = StudyProgress(
        study_name, n_trials=n_trials, max_epochs=settings.max_epochs,
        finished=state.finished_count(),
    )
    if rules:
        progress.add_epoch_hook(
            RuleChecker(study_name, rules, signal.request, progress.best_metric).epoch_finished
        )
    scheduler = (
        TrialScheduler(
            state, objective_fn, checkpoints=store, settings=settings, pause_signal=signal,
            progress=progress, flow_run_id=flow_run.id,
        )
        if trial_runs is None
        else TrialRunScheduler(
            state, objective_fn, checkpoints=store, settings=settings, pause_signal=signal,
            progress=progress, flow_run_id=flow_run.id, trial_runs=trial_runs,
        )
    )
    scheduler.check_checkpoints(restart_missing=restart_missing)
    execution = _read_run(flow_run.id).state.id  # the Running state this execution began with
    holds = TrialHolds(state.engine, study_name)
    if released := holds.release_all():
        logger.info("Held trial(s) %s resume with the study.", ", ".join(f"#{n}" for n in sorted(released)))
    unfinished = state.unfinished_trials()
    if unfinished or state.finished_count():
        continuing = ", ".join(
            f"#{t.number} after epoch {len(t.intermediate_values) - 1}" for t in unfinished
        ) or "none"
        logger.info(
            "Continuing study %r: %d/%d trials finished, %d unfinished trial(s) to continue: %s.",
            study_name, state.finished_count(), n_trials, len(unfinished), continuing,
        )
        if unfinished:
            emit_study_event("resumed", study_name, flow_run.id, {"continuing": [t.number for t in unfinished]})
            notify(
                policy, f"Study {study_name} resumed",
                f"Study {study_name!r} resumed (flow run {flow_run.id}): "
                f"{state.finished_count()} of {n_trials} trials finished; continuing {continuing}.",
            )
    reporter = ArtifactReporter(flow_run.id, progress)

    def publish_summary(entry: dict[str, Any], resume_at: datetime | None, how_to_resume: str | None) -> str:
        """The pause's markdown summary, published as the run's pause artifact."""
        summary = pause_summary(
            state, entry, n_trials=n_trials, max_epochs=settings.max_epochs,
            checkpoints=store.study_folder(study_name), flow_run_id=flow_run.id,
            resume_at=resume_at, how_to_resume=how_to_resume,
        )
        reporter.publish_pause_summary(summary)
        return summary

    triggers = _policy_triggers(policy)
    try:
        with reporter, TerminalProgress(progress):
            while True:
                with (
                    FlowRunPauseWatcher(flow_run.id, signal, triggers=triggers, holds=holds),
                    PauseOnSignals(signal, flow_run.id),
                    PauseKeys(signal),
                ):
                    result = scheduler.run()
                if result.failed or not _waits_in_process(signal, flow_run, policy, trial_runs, result, n_trials):
                    break
                with PauseOnSignals(signal, flow_run.id):  # SIGTERM or Ctrl+C: stop waiting, stay paused
                    stopped = _wait_for_pause_file_removal(state, flow_run, result, policy, signal, publish_summary)
                if stopped is not None:
                    return stopped
                signal.clear()
    except StopNow:
        _stop_now(state, scheduler, flow_run, lease, policy, publish_summary)

    if result.failed:
        _record_stop(state, flow_run, "trial-failed", result)
        first = result.failed[0]
        fix = "what the error names" if first.kept else "the objective"
        message = (
            f"Trial {first.number} of study {study_name!r} failed: {first.error}. "
            f"Trials {_epochs_text(result)} were paused with their checkpoints. Fix "
            f"{fix} and run the study again with the same study_name to continue it."
        )
        notify(policy, f"Study {study_name} failed", message)
        raise IntermissionError(message)
    if not signal.is_requested() and (late := pause_reason_of_state(_read_run(flow_run.id).state)):
        # Paused after the last trial ended: Prefect would end the run with that pause
        # (and its timeout). Carry it out like any other; resuming then completes at once.
        signal.request(late)
    if signal.is_requested():
        entry = _record_stop(state, flow_run, signal.reason or "unknown", result)
        resume_at = (
            policy.next_resume_time() if policy is not None and flow_run.deployment_id else None
        )
        summary = publish_summary(
            entry, resume_at, None if flow_run.deployment_id else _continue_markdown(study_name)
        )
        emit_study_event(
            "paused", study_name, flow_run.id,
            {"reason": entry["reason"], "trials": entry["trials"], "resume_at": resume_at.isoformat() if resume_at else None},
        )
        return _stop_for_pause(
            flow_run, execution, study_name, result, resume_at=resume_at,
            on_stopped=lambda: notify(policy, f"Study {study_name} paused", summary),
        )
    best = state.study.best_trial
    completed = (
        f"Study {study_name!r} complete: {result.finished} trials finished; best trial "
        f"#{best.number} with value {best.value} and params {best.params}."
    )
    logger.info(completed)
    emit_study_event(
        "completed", study_name, flow_run.id,
        {"finished_trials": result.finished, "best_value": best.value, "best_params": best.params},
    )
    notify(policy, f"Study {study_name} completed", completed)
    return {
        "study_name": study_name,
        "status": "completed",
        "finished_trials": result.finished,
        "best_trial": best.number,
        "best_value": best.value,
        "best_params": best.params,
    }


def _read_run(flow_run_id: Any) -> FlowRun:
    with get_client(sync_client=True) as client:
        return client.read_flow_run(flow_run_id)


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


def _record_stop(
    state: StudyState, flow_run: FlowRun, reason: str, result: ScheduleResult
) -> dict[str, Any]:
    with state.sampler_lock:
        state.save_sampler()
    return state.record_pause(
        flow_run_id=str(flow_run.id), reason=reason, trials=result.paused,
        resources=measure_resources(),
    )


def _waits_in_process(
    signal: PauseSignal,
    flow_run: FlowRun,
    policy: PausePolicy | None,
    trial_runs: TrialRunSettings | None,
    result: ScheduleResult,
    n_trials: int,
) -> bool:
    """A run outside a deployment, training its trials itself, paused by its pause file
    alone and with trials left, waits in its process for the file to go."""
    return (
        signal.reasons == ["file"] and flow_run.deployment_id is None and trial_runs is None
        and policy is not None and policy.pause_file is not None and result.finished < n_trials
    )


def _wait_for_pause_file_removal(
    state: StudyState,
    flow_run: FlowRun,
    result: ScheduleResult,
    policy: PausePolicy,
    signal: PauseSignal,
    publish_summary: Callable[[dict[str, Any], datetime | None, str | None], str],
) -> State | None:
    """Store the pause, say so, and wait in this process until the pause file is deleted.

    Returns None once it is deleted (the study goes on), or the run's final state if
    another pause reason (Ctrl+C, a key, a lost lease) ended the wait: the study stays
    paused, and running it again continues it.
    """
    study_name, path = state.study.study_name, str(policy.pause_file)
    entry = _record_stop(state, flow_run, "file", result)
    emit_study_event("paused", study_name, flow_run.id, {"reason": "file", "trials": entry["trials"]})
    message = (
        f"Study {study_name!r} paused by the pause file: trials {_epochs_text(result)}; "
        f"checkpoints and study state stored. Delete {path} to resume it in this process."
    )
    get_run_logger().info(message)
    print(message, file=sys.stderr)
    summary = publish_summary(entry, None, f"Delete `{path}`: the study resumes in its process.")
    notify(policy, f"Study {study_name} paused", summary)
    try:
        wait_until_removed(path, unless=lambda: len(signal.reasons) > 1)
    except KeyboardInterrupt:
        signal.request("signal")
    if len(signal.reasons) > 1:  # Ctrl+C, a key, a lost lease...: stop waiting, stay paused
        stopped = (
            f"Stopped waiting for {path} to be deleted ({signal.reasons[1]}); the study stays "
            f"paused: {_continue_instruction(study_name)}"
        )
        get_run_logger().info(stopped)
        print(stopped, file=sys.stderr)
        return Completed(name="Paused", message=stopped)
    resumed = f"Pause file {path} deleted: study {study_name!r} resumes."
    get_run_logger().info(resumed)
    print(resumed, file=sys.stderr)
    emit_study_event("resumed", study_name, flow_run.id, {"continuing": sorted(result.paused)})
    notify(policy, f"Study {study_name} resumed", resumed)
    return None


def _stop_now(
    state: StudyState,
    scheduler: TrialScheduler,
    flow_run: FlowRun,
    lease: StudyLease,
    policy: PausePolicy | None,
    publish_summary: Callable[[dict[str, Any], datetime | None, str | None], str],
) -> NoReturn:
    """After a second Ctrl+C: store what can be stored, mark the run paused, exit at once.

    The trials being trained are marked paused at their last checkpoint (their epoch
    in progress is lost) and the sampler and the pause are stored; then the process
    exits without waiting for those trials, so nothing after that is recorded.
    """
    study_name = state.study.study_name
    scheduler.pause_signal.stop_recording()  # an epoch being stored is finished; no other starts
    result = ScheduleResult(finished=state.finished_count(), paused=scheduler.stop_now())
    entry = _record_stop(state, flow_run, "signal", result)
    if scheduler.stops_trials_at_once:
        trials_text = (
            f"trials {_epochs_text(result)} continue from these checkpoints and train the "
            "epoch they were in again"
        )
    else:
        trials_text = (
            f"trials {_epochs_text(result)} are paused or pause in their own runs after the "
            "epoch they are in"
        )
    message = (
        f"Study {study_name!r} stopped at once (second Ctrl+C): {trials_text}; the sampler "
        "and study state are stored."
    )
    if flow_run.deployment_id is None:
        message = f"{message} {_continue_instruction(study_name)}"
        stopped: State = Completed(name="Paused", message=message)
        exit_code = 130  # the shell's code for a run ended by Ctrl+C
    else:
        message = f"{message} Resume it with `intermission resume {flow_run.id}`."
        stopped = Suspended(pause_key=f"{FLOW_PAUSE_KEY_PREFIX}{uuid4().hex}")
        exit_code = 0  # suspended, as after any pause: the worker must not mark it crashed
    try:
        with get_client(sync_client=True) as client:
            client.set_flow_run_state(flow_run.id, stopped, force=True)
    except Exception:  # the study is stored: running it again continues it all the same
        get_run_logger().warning("Could not mark flow run %s paused.", flow_run.id, exc_info=True)
    get_run_logger().warning(message)
    print(message, file=sys.stderr, flush=True)
    publish_summary(entry, None, None if flow_run.deployment_id else _continue_markdown(study_name))
    emit_study_event("paused", study_name, flow_run.id, {"reason": entry["reason"], "trials": entry["trials"]})
    notify(policy, f"Study {study_name} paused", message)
    APILogWorker.drain_all(timeout=10)
    EventsWorker.drain_all(timeout=10)
    sys.stdout.flush()
    lease.close()  # last: the next execution may start at once, and nothing here records any more
    os._exit(exit_code)  # the trials' threads are not waited for: that is the point


def _expired_pause(state: State) -> bool:
    """Whether the server failed the run because a pause timed out before we suspended it."""
    return state.is_failed() and "paused and never resumed" in (state.message or "")


def _continue_instruction(study_name: str) -> str:
    """How to continue a study that ran outside a deployment: run it again."""
    if command := _same_command():
        return f"continue it by running the same command again:\n    {command}"
    return f"continue it by calling optimize_study again with study_name={study_name!r}."


def _continue_markdown(study_name: str) -> str:
    """`_continue_instruction` as markdown, for the pause summary and its notification."""
    if command := _same_command():
        return f"Run the same command again:\n\n    {command}"
    return f"Call `optimize_study` again with `study_name={study_name!r}`."


def _same_command() -> str | None:
    """The command line that started this process (secrets masked), if it was a script."""
    if sys.argv and sys.argv[0] not in ("", "-c"):
        return shlex.join([sys.executable, *redact_arguments(sys.argv)])
    return None


def _policy_triggers(policy: PausePolicy | None) -> list[Callable[[], str | None]]:
    """The pause file and the next pause window of the policy, as watcher triggers."""
    triggers = []
    if policy is not None and policy.pause_file:
        triggers.append(pause_file_trigger(policy.pause_file))
    if policy is not None and (at := policy.next_pause_time()) is not None:
        triggers.append(pause_window_trigger(at))
    return triggers


def _stop_for_pause(
    flow_run: FlowRun,
    execution: UUID,
    study_name: str,
    result: ScheduleResult,
    *,
    resume_at: datetime | None = None,
    on_stopped: Callable[[], object] = lambda: None,
) -> State:
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
        on_stopped()
        return Completed(
            name="Paused",
            message=message,
            data={"study_name": study_name, "status": "paused", "paused_trials": result.paused},
        )

    with get_client(sync_client=True) as client:
        current = client.read_flow_run(flow_run.id).state
        if current is not None and current.is_running() and current.id != execution:
            logger.warning(
                "Flow run %s was resumed before it finished pausing and another execution "
                "has started; leaving the run to it.", flow_run.id,
            )
            raise Pause(f"{summary} Resumed while pausing.")
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
    fault_point("flow.suspend")
    try:
        suspend_flow_run(timeout=None, key=f"{FLOW_PAUSE_KEY_PREFIX}{uuid4().hex}")
    except Pause:
        # Suspended: the pause is complete. Schedule the resume and tell people, then exit.
        if resume_at is not None:
            schedule_resume(flow_run.id, resume_at)
            run_logger.info("The study resumes by itself at %s.", resume_at.isoformat())
        on_stopped()
        raise
    raise IntermissionError(f"Flow run {flow_run.id} could not be suspended; it is still running.")
