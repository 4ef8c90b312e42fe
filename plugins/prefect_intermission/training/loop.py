"""The resumable epoch loop an Optuna objective trains with.

    def objective(trial: optuna.Trial, loop: TrialLoop) -> float:
        lr = trial.suggest_float("lr", 1e-3, 1e-1, log=True)
        model = make_model()
        optimizer = torch.optim.SGD(model.parameters(), lr=lr)
        loader = DataLoader(train_set, shuffle=True, generator=loop.generator)
        for epoch in loop.epochs(model, optimizer):
            train_one_epoch(model, optimizer, loader)
            loop.end_epoch(validation_loss(model))
        return loop.best_metric

At every `end_epoch` the loop reports the metric to Optuna (and honours the pruner;
a study with several objectives records it without pruning, as Optuna prunes none),
stores a checkpoint with everything needed to continue exactly (marked as the best
epoch's when its metric is the best so far), and stops the trial with `TrialPaused`
when a pause was requested. When the trial runs again after a pause, `epochs()`
restores the latest checkpoint and continues with the next epoch.
"""

from __future__ import annotations

import functools
import logging
import math
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import optuna
import torch

from prefect_intermission._counting import epochs_done
from prefect_intermission._faults import fault_point
from prefect_intermission._threads import drop_inherited_exit_hooks
from prefect_intermission.errors import (
    IntermissionError,
    MetricNotFinite,
    TrialPaused,
)
from prefect_intermission.settings import settings
from prefect_intermission.training import loop_payload
from prefect_intermission.training.checkpoints import TrialCheckpoints
from prefect_intermission.training.context import TrialContext
from prefect_intermission.training.data import ResumableDataLoader
from prefect_intermission.training.direction import (
    Direction,
    check_direction,
)
from prefect_intermission.training.pause_signal import PauseSignal
from prefect_intermission.training.trial_progress import ProgressView, TrialProgress
from prefect_intermission.training.trial_settings import TrainingSettings
from prefect_intermission.training.within_epoch import WithinEpoch

_COMPONENTS = ("model", "optimizer", "scheduler", "scaler")

def _init_worker(user_init: Callable[[int], object] | None, worker_id: int) -> None:
    """A data-loading worker of `loop.data_loader`: `TrialLoop.worker_init_fn`, then the user's."""
    TrialLoop.worker_init_fn(worker_id)
    if user_init is not None:
        user_init(worker_id)


@dataclass(frozen=True)
class Restore:
    """Where an attempt of a trial starts.

    Attributes:
        from_epoch: The checkpointed epoch training continues after; None: from scratch.
        fallbacks: Newer checkpoints skipped as damaged, `{"epoch": e, "problem": "..."}`.
        lost_epochs: Epochs reported to Optuna earlier that no valid checkpoint holds;
            they are trained again.
    """

    from_epoch: int | None
    fallbacks: list[dict[str, Any]] = field(default_factory=list)
    lost_epochs: list[int] = field(default_factory=list)


class TrialLoop(ProgressView):
    """Trains one trial epoch by epoch, so that it can stop and continue exactly.

    The study flow creates it and hands it to the objective; it can also be created
    directly, e.g. to use the loop with plain `study.optimize`.

    Args:
        trial: The Optuna trial being trained.
        checkpoints: Where this trial's checkpoints go.
        seed: Seeds `generator`, the data loader's shuffling generator.
        training: How the trial trains (`TrainingSettings`: `max_epochs`, `patience`,
            `objective_params`, `pause_granularity`, `checkpoint_every_steps`...); or give
            its settings one by one instead, e.g. `TrialLoop(trial, checkpoints, seed=0, max_epochs=6)`.
        pause_signal: Read at every epoch boundary; when set, the trial pauses.
        direction: Whether a lower (`"minimize"`) or higher metric is better. With
            several objectives, the metric passed to `end_epoch` is the one the loop
            tracks (best checkpoint, patience): the first objective's, in its direction.
        on_start: Called once the checkpoint is restored, before the first epoch.
        on_epoch: Called with `(epoch, metric)` after each epoch's checkpoint is taken.
        logger: Where each epoch's line goes (the study passes Prefect's run logger).
        background_checkpoints: Write each checkpoint in a thread of its own while the
            next epoch trains: the training thread only copies the state (into CPU
            memory). A pause, the trial's end, the next report and the next checkpoint
            wait for it, so a crash loses at most the epoch being written. False: write
            on the training thread. None (the default): the setting
            `INTERMISSION_BACKGROUND_CHECKPOINTS` (on unless set to false).

    Attributes:
        generator: Pass it to `DataLoader(..., generator=loop.generator)`; its state is
            checkpointed so a resumed trial sees the same shuffling.
        extra_state: Your own state to checkpoint (plain data and tensors).
        objective_params: The study's `objective_params` (an empty dict when none).
        context: The trial as the study hands it to any training code (`TrialContext`):
            what the Lightning and Transformers integrations take.
        progress: The trial's progress (`TrialProgress`): its epochs, metrics and early-stopping
            count, kept here whatever trains the trial (the integrations keep it too); read it
            through the properties below.
        global_step: Steps counted with `step()` across epochs.
        within_epoch: The steps of the epoch in progress and the data position (`WithinEpoch`).
    """

    @staticmethod
    def worker_init_fn(worker_id: int) -> None:
        """`DataLoader(..., num_workers=N, worker_init_fn=TrialLoop.worker_init_fn)`, for two
        reasons. Ctrl+C reaches every process of the terminal, and a data-loading worker
        would die of it and fail the epoch; this leaves Ctrl+C to the study, which pauses
        at its boundary. And a worker forked from a Prefect flow run inherits the exit
        hooks of Prefect's log and event services, which fail in the worker (Prefect
        3.8.8), so it exits with code 1 and torch fails the epoch; they are dropped here
        (the worker has none of those services' threads)."""
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        drop_inherited_exit_hooks()

    def __init__(
        self,
        trial: optuna.Trial,
        checkpoints: TrialCheckpoints,
        *,
        seed: int,
        training: TrainingSettings | None = None,
        pause_signal: PauseSignal | None = None,
        direction: Direction = "minimize",
        on_start: Callable[[Restore], None] | None = None,
        on_epoch: Callable[[int, float], None] | None = None,
        logger: logging.Logger | logging.LoggerAdapter[logging.Logger] | None = None,
        background_checkpoints: bool | None = None,
        **training_settings: Any,
    ) -> None:
        training = TrainingSettings.of(training, **training_settings)
        check_direction(direction)
        self.training = training
        self.pause_granularity = training.pause_granularity
        self.within_epoch = WithinEpoch(
            checkpoint_every_steps=training.checkpoint_every_steps,
            checkpoint_every_seconds=training.checkpoint_every_seconds,
        )
        self.trial = trial
        self.checkpoints = checkpoints
        self.max_epochs = training.max_epochs
        self.pause_signal = pause_signal
        self.direction = direction
        self.patience = training.patience
        self.on_start = on_start
        self.on_epoch = on_epoch
        self.generator = torch.Generator().manual_seed(seed)
        self.extra_state: dict[str, Any] = {}
        self.objective_params: dict[str, Any] = dict(training.objective_params)
        self.context = TrialContext(
            trial, checkpoints, seed=seed, max_epochs=training.max_epochs, direction=direction,
            pause_signal=pause_signal, objective_params=self.objective_params,
            logger=logger if logger is not None else logging.getLogger(__name__),
            background_checkpoints=(
                settings().background_checkpoints if background_checkpoints is None else background_checkpoints
            ),
        )
        self.progress = TrialProgress(trial.number, training.max_epochs, direction, training.patience)
        self.global_step = 0
        self._epoch_started = 0.0
        self._components: dict[str, Any] = {}
        self._log = logger if logger is not None else logging.getLogger(__name__)
        self._epoch_ended = True

    def epochs(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        scheduler: Any | None = None,
        scaler: Any | None = None,
    ) -> Iterator[int]:
        """Yield the epochs still to train, after restoring the latest checkpoint.

        Pass every object whose state must survive a pause: the model, its optimizer,
        its LR scheduler and the AMP grad scaler, when used.
        """
        self._components = {
            name: obj
            for name, obj in zip(_COMPONENTS, (model, optimizer, scheduler, scaler))
            if obj is not None
        }
        restore = self._restore()
        if self.on_start is not None:
            self.on_start(restore)
        first = 0 if restore.from_epoch is None else restore.from_epoch + 1
        for epoch in range(self.max_epochs if self.progress.stopped_early else first, self.max_epochs):
            self._epoch_ended = False
            self._epoch_started = time.perf_counter() - self.within_epoch.start_epoch()
            yield epoch
            if not self._epoch_ended:
                raise IntermissionError(
                    f"Epoch {epochs_done(epoch)} of trial {self.trial.number} ended without "
                    "loop.end_epoch(metric); call it once at the end of every epoch."
                )
            if self.progress.stopped_early:
                break
        self.checkpoints.wait()  # the trial ends with its last checkpoint stored

    def trainer_started(self, restore: Restore) -> None:
        """For a trainer other than `epochs()` (an integration): it restored the trial's
        checkpoint as `restore` says (and `progress` with it) and is about to train; the study
        is told, as `epochs()` tells it."""
        if self.on_start is not None:
            self.on_start(restore)

    def step(self, n: int = 1) -> None:
        """Count `n` optimisation steps: a step boundary.

        With `pause_granularity="step"` a requested pause stops the trial here, after a
        checkpoint holding the data position; with `checkpoint_every_steps` or
        `checkpoint_every_seconds` a checkpoint is also taken here when one is due.

        Raises:
            TrialPaused: A pause was requested; the checkpoint is already stored.
        """
        self.global_step += n
        self.within_epoch.count(n)
        pausing = (
            self.pause_granularity == "step" and self.pause_signal is not None
            and self.pause_signal.pauses(self.trial.number)
        )
        if pausing or self.within_epoch.checkpoint_due():
            self._save_within_epoch()
            if pausing:
                self.checkpoints.wait()
                raise TrialPaused(self.trial.number, self.epoch, steps_into_epoch=self.within_epoch.steps)

    def release(self) -> None:
        """Let go of the model, optimizer, scheduler, scaler, data loaders, `extra_state`,
        the copy buffers of background checkpoints and the `on_start`/`on_epoch` callbacks.

        The study calls it once an attempt has ended and its last checkpoint is stored: the
        loop no longer keeps them alive, so their memory (and the loaders' worker processes)
        goes at once, not at the next full garbage collection (the callbacks refer to the loop).
        """
        self._components = {}
        self.within_epoch.release()
        self.extra_state = {}
        self.on_start = self.on_epoch = None
        self.checkpoints.release()

    def data_loader(self, dataset: Any, *, batch_size: int = 1, shuffle: bool = False, **kwargs: Any) -> ResumableDataLoader:
        """A `DataLoader` over `dataset` whose place in the epoch is checkpointed with the trial.

        Takes `DataLoader`'s arguments (not `sampler`, `batch_sampler` or `generator`);
        shuffling draws from `generator`. Make it before `epochs()`: a trial resumed
        within an epoch continues with the next batch, in the same order.
        """
        if kwargs.get("num_workers"):
            kwargs["worker_init_fn"] = functools.partial(_init_worker, kwargs.get("worker_init_fn"))
        loader = ResumableDataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=self.generator, **kwargs)
        return self.track_data(loader)

    def track_data(self, data: Any) -> Any:
        """Checkpoint `data`'s position within the epoch: anything with `state_dict()` and
        `load_state_dict()` (an iterable dataset of your own, torchdata's StatefulDataLoader).

        Register it before `epochs()`; returns it.
        """
        return self.within_epoch.track(data)

    def _save_within_epoch(self) -> None:
        """Store a checkpoint within the epoch in progress: the state now, plus the data position."""
        state = self._checkpoint_state()
        state["within_epoch"] = self.within_epoch.position(self.trial.number, time.perf_counter() - self._epoch_started)
        path = self._store(self.epoch + 1, state, mid_epoch=True)
        self.within_epoch.checkpointed()
        self._log.info(
            "Trial %d: checkpoint within epoch %d of %d, %d steps in, %s %s.",
            self.trial.number, epochs_done(self.epoch) + 1, self.max_epochs, self.within_epoch.steps,
            f"{self.context.stored} at", path,
        )

    def _store(self, epoch: int, state: dict[str, Any], *, best: bool = False, mid_epoch: bool = False) -> str:
        return self.context.store(epoch, state, last_epoch=self.epoch, best=best, mid_epoch=mid_epoch)

    def end_epoch(self, metric: float) -> None:
        """Finish the current epoch: report, maybe prune, checkpoint, maybe pause.

        Raises:
            optuna.TrialPruned: The pruner stopped the trial.
            TrialPaused: A pause was requested; the checkpoint is already stored.
            MetricNotFinite: The metric is NaN or infinite: the trial fails, as in Optuna.
        """
        if self._epoch_ended:
            raise IntermissionError("end_epoch() was called twice, or outside loop.epochs().")
        # The previous checkpoint is stored before this epoch is reported: a crash from
        # here on loses no more than this epoch.
        self.checkpoints.wait()
        epoch = self.epoch + 1
        metric = float(metric)
        if not math.isfinite(metric):
            raise MetricNotFinite(
                f"Trial {self.trial.number} reported metric {metric} after epoch "
                f"{epochs_done(epoch)}; nothing of that epoch was stored"
            )
        seconds = time.perf_counter() - self._epoch_started
        if self.pause_signal is None:
            self._record_epoch(epoch, metric, seconds)
        else:
            with self.pause_signal.recording(self.trial.number, self.epoch):
                self._record_epoch(epoch, metric, seconds)
        more_to_train = epoch + 1 < self.max_epochs and not self.progress.stopped_early
        if more_to_train and self.pause_signal is not None and self.pause_signal.pauses(self.trial.number):
            self.checkpoints.wait()
            raise TrialPaused(self.trial.number, epoch)

    def _record_epoch(self, epoch: int, metric: float, seconds: float) -> None:
        """Report the epoch, count it, check the pruner, store the checkpoint and say so."""
        if self.progress.needs_report(epoch):
            self.context.report(metric, epoch)
        fault_point("trial.report")
        improved = self.progress.finish_epoch(epoch, metric, seconds)
        self._epoch_ended = True
        if self.context.should_prune():
            raise optuna.TrialPruned(f"Pruned after {epochs_done(epoch)} epochs with metric {metric}.")
        self.within_epoch.checkpointed()
        self._store(epoch, self._checkpoint_state(), best=improved)
        self._log.info("%s", self.progress.epoch_line(self.context.stored))
        if self.on_epoch is not None:
            self.on_epoch(epoch, metric)

    def _checkpoint_state(self) -> dict[str, Any]:
        return loop_payload.capture(
            trial_number=self.trial.number, global_step=self.global_step, progress=self.progress,
            components=self._components, extra_state=self.extra_state, generator=self.generator,
        )

    def _restore(self) -> Restore:
        """Load the latest valid checkpoint, if any, into the tracked objects."""
        progress = self.progress
        progress.reported = self.context.reported_steps()
        loaded = self.context.load_latest(progress.reported)
        state = loaded.state
        if state is None:
            return Restore(None, loaded.fallbacks, progress.lost_epochs())
        within = state.get("within_epoch")
        where = self.checkpoints.path(state["epoch"] + 1 if within else state["epoch"], mid_epoch=bool(within))
        loop_payload.restore(
            state, where=where, trial_number=self.trial.number, components=self._components,
            extra_state=self.extra_state, generator=self.generator,
        )
        progress.load_state_dict(state, epoch=state["epoch"])
        self.global_step = state["global_step"]
        if within is not None:
            self.within_epoch.restore(within, where)
        self._log.info("%s", progress.continues_line(within["steps"] if within else None))
        return Restore(progress.epoch, loaded.fallbacks, progress.lost_epochs())
