"""Running one attempt of one trial: from a fresh start or from its checkpoint.

An attempt seeds the global generators from the study seed and the trial number,
hands the objective a `TrialLoop`, and records how the attempt ended in Optuna:
complete, pruned, failed, or paused (the trial then stays RUNNING).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Literal

import optuna
from optuna.trial import TrialState
from sqlalchemy.exc import SQLAlchemyError

from prefect_intermission._counting import epochs_done, position_text
from prefect_intermission._faults import fault_point
from prefect_intermission._logging import run_logger
from prefect_intermission._optuna_internals import storage_of, trial_id_of
from prefect_intermission.errors import CheckpointError, TrialPaused
from prefect_intermission.reporting.progress import StudyProgress
from prefect_intermission.study.callbacks import TrialCallback, load_callbacks
from prefect_intermission.study.config import StudyConfig
from prefect_intermission.study.failures import exception_types, failure_of_trial
from prefect_intermission.study.resuming import record_resumption
from prefect_intermission.study.state import TRIAL_STATUS_ATTR, StudyState
from prefect_intermission.training._memory import release_memory, torch_uses_cuda
from prefect_intermission.training._rng import seed_everything
from prefect_intermission.training.direction import Direction
from prefect_intermission.training.loop import Restore, TrialLoop
from prefect_intermission.training.pause_signal import PauseSignal
from prefect_intermission.training.store import CheckpointStore
from prefect_intermission.training.trial_settings import TrainingSettings

logger = logging.getLogger(__name__)

Objective = Callable[[optuna.Trial, TrialLoop], float | Sequence[float]]
OutcomeState = Literal["complete", "pruned", "paused", "failed"]


@dataclass(frozen=True)
class TrialOutcome:
    """How one attempt of a trial ended."""

    number: int
    state: OutcomeState
    value: float | None = None
    epoch: int | None = None
    error: str | None = None
    kept: bool = False  # failed, but kept paused at its last checkpoint for the next run
    message: str | None = None  # a paused attempt: how far it got and where its checkpoint is
    stopping: bool = False  # paused by Stop & Save: recorded pruned once every trial has stopped
    study_goes_on: bool = False  # failed as Optuna fails a trial (NaN, `catch`, out of memory)
    values: list[float] | None = None  # a finished trial of a study with several objectives


@dataclass(frozen=True)
class AttemptSettings:
    """What every attempt of a study's trials is given: how it trains, and the study's seed,
    direction and callbacks."""

    training: TrainingSettings
    study_seed: int
    direction: Direction = "minimize"
    callbacks: Sequence[TrialCallback] = ()

    @classmethod
    def of(cls, config: StudyConfig) -> AttemptSettings:
        """The settings of the study's attempts (its callbacks loaded)."""
        if config.search.seed is None:
            raise ValueError("The study's seed is drawn before its trials train: use config.with_seed(...).")
        return cls(
            config.training, config.search.seed, config.search.metric_direction, load_callbacks(config.search.callbacks)
        )


def trial_seed(study_seed: int, trial_number: int) -> int:
    """The seed of one trial: fixed by the study seed and the trial number."""
    return (study_seed * 1_000_003 + trial_number) % 2**63


def run_trial_attempt(
    state: StudyState,
    trial: optuna.Trial,
    objective: Objective,
    *,
    checkpoints: CheckpointStore,
    settings: AttemptSettings,
    pause_signal: PauseSignal,
    progress: StudyProgress | None = None,
    hold_sampler_while_suggesting: bool = False,
) -> TrialOutcome:
    """Train `trial` until it finishes or pauses, and record the result in Optuna.

    The loop trains as `settings.training` says. A NaN, an exception listed in its
    `catch`, or running out of GPU memory fails the trial and the study goes on; the
    settings' `callbacks` are called as Optuna calls them, once a trial finishes.
    With `progress`, every epoch boundary is reported to it as it happens. With
    `hold_sampler_while_suggesting`, the study's `sampler_lock` is held from the start
    of the objective until its training loop starts, i.e. while it makes its
    suggestions: needed when other processes sample from the same stored sampler. A
    trial continued after a pause already has its parameters and samples nothing, so
    it neither waits for that lock nor stores the sampler.
    """
    number = trial.number
    seed = trial_seed(settings.study_seed, number)
    catch, callbacks = exception_types(settings.training.catch), settings.callbacks
    earlier = storage_of(state.study).get_trial_system_attrs(trial_id_of(trial)).get(TRIAL_STATUS_ATTR)
    state.mark_running(trial_id_of(trial), seed)
    seed_everything(seed)
    samples = not hold_sampler_while_suggesting or not trial.params
    suggesting = ExitStack()
    if hold_sampler_while_suggesting and samples:
        suggesting.enter_context(state.sampler_lock)
    started = _Started(state, trial, samples=samples, suggesting=suggesting, progress=progress, earlier=earlier)
    loop = started.loop = TrialLoop(
        trial,
        checkpoints.for_trial(state.study.study_name, number),
        seed=seed,
        training=settings.training,
        pause_signal=pause_signal,
        direction=settings.direction,
        on_start=started,
        logger=run_logger(TrialLoop.__module__),
        on_epoch=(
            (lambda epoch, metric: progress.epoch_finished(number, epoch, metric, loop.best_metric))
            if progress is not None else None
        ),
    )
    try:
        try:
            value = objective(trial, loop)
        finally:
            suggesting.close()
            loop.checkpoints.wait()  # however the objective ended, its last checkpoint is stored (or its error raised)
    except BaseException as stopped:
        state.record_epoch_seconds(trial_id_of(trial), loop.epoch_seconds)
        outcome = _stopped(state, trial, loop, stopped, catch=catch, callbacks=callbacks)
    else:
        state.record_epoch_seconds(trial_id_of(trial), loop.epoch_seconds)
        outcome = _returned(state, trial, value, loop.epoch, callbacks=callbacks)
    loop.release()  # the model, optimizer and copy buffers go now, not at a full garbage collection
    if outcome.state == "paused":  # here, where the pause and its traceback are let go of
        release_memory(collect=torch_uses_cuda())
    return outcome


class _Started:
    """Runs once the loop has restored the trial's checkpoint, before its first epoch."""

    def __init__(
        self,
        state: StudyState,
        trial: optuna.Trial,
        *,
        samples: bool,
        suggesting: ExitStack,
        progress: StudyProgress | None,
        earlier: str | None,
    ) -> None:
        self.state, self.trial, self.samples, self.suggesting = state, trial, samples, suggesting
        self.progress, self.earlier = progress, earlier
        self.loop: TrialLoop | None = None

    def __call__(self, restore: Restore) -> None:
        """Store the sampler once the objective has suggested, say the trial started, and
        record a continuation (after a pause or a crash) with what it lost."""
        if self.samples:
            self.state.save_sampler()
        self.suggesting.close()
        if self.progress is not None and self.loop is not None:
            start = -1 if restore.from_epoch is None else restore.from_epoch
            self.progress.trial_started(self.trial.number, self.trial.params, start, self.loop.best_metric)
        if self.earlier is not None:
            record_resumption(self.state, self.trial, self.earlier, restore)


def _returned(
    state: StudyState, trial: optuna.Trial, value: object, epoch: int, *, callbacks: Sequence[TrialCallback]
) -> TrialOutcome:
    """Record what the objective returned: complete, or failed (the study goes on) when it is
    not one finite number per objective."""
    number, n_objectives = trial.number, len(state.study.directions)
    values = _as_values(value, n_objectives)
    if values is None:
        wanted = "a finite number" if n_objectives == 1 else f"{n_objectives} finite numbers (one per direction)"
        error = f"the objective returned {value!r}; it must return {wanted}"
        return _failed(state, trial, epoch, error, study_goes_on=True, callbacks=callbacks)
    _tell(state, number, values=values, callbacks=callbacks)
    if n_objectives > 1:
        return TrialOutcome(number, "complete", epoch=epoch, values=values)
    return TrialOutcome(number, "complete", value=values[0], epoch=epoch)


def _as_values(value: object, n_objectives: int) -> list[float] | None:
    """The objective's return value as one float per objective, or None if it is not that."""
    returned = list(value) if isinstance(value, Sequence) and not isinstance(value, str) else [value]
    try:
        values = [float(v) for v in returned]  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return values if len(values) == n_objectives and all(math.isfinite(v) for v in values) else None


def _stopped(
    state: StudyState,
    trial: optuna.Trial,
    loop: TrialLoop,
    stopped: BaseException,
    *,
    catch: tuple[type[BaseException], ...],
    callbacks: Sequence[TrialCallback],
) -> TrialOutcome:
    """Record an attempt that ended with an exception: paused, pruned or failed (others propagate)."""
    number = trial.number
    if isinstance(stopped, TrialPaused):
        steps = stopped.steps_into_epoch
        state.mark_paused(trial_id_of(trial), stopped.epoch, steps_into_epoch=steps)
        path = loop.checkpoints.path(stopped.epoch + 1, mid_epoch=True) if steps else loop.checkpoints.path(stopped.epoch)
        stopping = state.stop_request() is not None
        message = (
            f"Trial {number} {'stopped by Stop & Save' if stopping else 'paused'}: "
            f"{position_text(stopped.epoch, loop.max_epochs, steps)}; checkpoint stored at {path}."
        )
        run_logger(__name__).info(message)
        return TrialOutcome(number, "paused", epoch=stopped.epoch, message=message, stopping=stopping)
    if isinstance(stopped, optuna.TrialPruned):
        _tell(state, number, trial_state=TrialState.PRUNED, callbacks=callbacks)
        return TrialOutcome(number, "pruned", value=loop.last_metric, epoch=loop.epoch)
    if isinstance(stopped, (CheckpointError, SQLAlchemyError)):
        return _kept_for_next_run(state, trial, loop, stopped)
    if isinstance(stopped, Exception):
        goes_on = failure_of_trial(stopped, catch)
        if goes_on is None:
            logger.error("Trial %d failed in its objective.", number, exc_info=stopped)
        _release_gpu_memory(stopped)
        error = goes_on or f"{type(stopped).__name__}: {stopped}"
        return _failed(state, trial, loop.epoch, error, study_goes_on=goes_on is not None, callbacks=callbacks)
    raise stopped


def _failed(
    state: StudyState,
    trial: optuna.Trial,
    epoch: int,
    error: str,
    *,
    study_goes_on: bool,
    callbacks: Sequence[TrialCallback],
) -> TrialOutcome:
    """Mark the trial FAIL in Optuna, recording why and whether the study goes on."""
    state.record_failure(trial_id_of(trial), error, study_goes_on=study_goes_on)
    _tell(state, trial.number, trial_state=TrialState.FAIL, callbacks=callbacks)
    return TrialOutcome(trial.number, "failed", epoch=epoch, error=error, study_goes_on=study_goes_on)


def _release_gpu_memory(error: BaseException) -> None:
    """After a trial ran out of GPU memory, give its cached blocks back for the next trial."""
    import torch

    if isinstance(error, torch.OutOfMemoryError) and torch.cuda.is_available():
        torch.cuda.empty_cache()


def _kept_for_next_run(
    state: StudyState, trial: optuna.Trial, loop: TrialLoop, stopped: Exception
) -> TrialOutcome:
    """The checkpoints or the study's storage failed, not the user's code: the trial stays
    paused at its last checkpoint, so the run that follows the fix continues it."""
    try:
        last = loop.checkpoints.last_epoch()
    except Exception:
        last = None
    state.mark_paused(trial_id_of(trial), last)
    logger.error(
        "Trial %d stopped: %s. It keeps its checkpoints (the last with %s epochs done) and continues "
        "from there when the study runs again.", trial.number, stopped, epochs_done(last), exc_info=stopped,
    )
    return TrialOutcome(trial.number, "failed", epoch=last, error=f"{type(stopped).__name__}: {stopped}", kept=True)


def _tell(
    state: StudyState,
    number: int,
    *,
    values: list[float] | None = None,
    trial_state: TrialState = TrialState.COMPLETE,
    callbacks: Sequence[TrialCallback] = (),
) -> None:
    """Finish a trial in Optuna through the study's own sampler, store the sampler, then call
    the study's callbacks with the finished trial (as `study.optimize` does)."""
    with state.sampler_lock:
        fault_point("study.tell")
        frozen = state.study.tell(number, values, state=trial_state)
        fault_point("study.told")
        state.save_sampler()
    for callback in callbacks:
        try:
            callback(state.study, frozen)
        except Exception:
            run_logger(__name__).error(
                "Callback %r failed after trial %d; the study goes on.", callback, number, exc_info=True
            )
