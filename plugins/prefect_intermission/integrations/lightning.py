"""PyTorch Lightning: an objective that trains with `lightning.Trainer`, pausable at its next step.

    from prefect_intermission.integrations.lightning import fit

    def objective(trial: optuna.Trial, loop: TrialLoop) -> float:
        model = MyModule(lr=trial.suggest_float("lr", 1e-4, 1e-1, log=True))
        return fit(loop, model, datamodule=MyData(generator=loop.generator), monitor="val_loss")

or, with a `Trainer` of your own:

    pausable = IntermissionCallback(loop, monitor="val_loss")
    trainer = lightning.Trainer(max_epochs=loop.max_epochs, callbacks=[pausable])
    trainer.fit(model, datamodule=data, ckpt_path=pausable.ckpt_path())
    return pausable.outcome()

At the end of every epoch (after its validation) the callback reports the monitored
metric to Optuna, with the epoch as the step, and asks the pruner (it replaces
optuna-integration's pruning callback); then it stores the epoch's checkpoint through
the trial's verified store (manifest, checksum, fallback to an older one, loaded with
`weights_only=True`). A checkpoint is Lightning's own (`Trainer.save_checkpoint`: model,
optimizers, schedulers, callbacks, loop progress, the data loaders' position) plus what
Lightning leaves out: the global Python, NumPy and torch generators, and `loop.generator`.

A pause stops the trainer at its next step boundary through `trainer.should_stop`,
after a mid-epoch checkpoint, when every training data loader can say where it is
(`state_dict()`/`load_state_dict()`: `ResumableDataLoader(..., generator=loop.generator)`,
or torchdata's `StatefulDataLoader`); with other loaders, at the end of the epoch. A
step whose gradients are still accumulating, an epoch's last step and a step followed
by a validation are no boundary: the pause waits for the next one. `outcome()` then
raises `TrialPaused`, and the resumed trial continues through Lightning's own
`ckpt_path`: Lightning restores everything from the verified checkpoint, which reaches
it through a `CheckpointIO` wrapper, and the callback sets the generators back (and
takes the `ReduceLROnPlateau` steps Lightning takes outside its checkpoints). In a study,
SIGTERM on the main thread stays the study's: a pause at the next step, not Lightning's
exit after it.

Shuffle with `loop.generator` (`DataLoader(..., shuffle=True, generator=loop.generator)`),
so that the order of later epochs is part of the checkpoint. Random augmentation in a
dataset should draw from the sample index and `torch.utils.data.get_worker_info().seed`.
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
from typing import Any

import optuna

try:
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import Checkpoint
except ImportError as e:  # the optional extra is not installed
    raise ImportError(
        f"prefect_intermission.integrations.lightning needs PyTorch Lightning ({e}). "
        "Install the extra: pip install 'prefect-intermission[lightning]'"
    ) from e

from prefect_intermission._counting import epochs_done
from prefect_intermission.errors import (
    ConfigurationError,
    IntermissionError,
    MetricNotFinite,
    TrialPaused,
)
from prefect_intermission.integrations._lightning_boundaries import (
    TrainerStop,
    check_trainer,
    is_step_boundary,
    loaders_say_where_they_are,
)
from prefect_intermission.integrations._lightning_io import TrialCheckpointIO
from prefect_intermission.integrations._lightning_restore import (
    STATE_KEY,
    capture_own_state,
    own_entry,
    plateau_steps_due,
    step_plateaus,
)
from prefect_intermission.integrations._weights_only import refuse_unsafe
from prefect_intermission.training._rng import restore_rng_state
from prefect_intermission.training.loop import Restore, TrialLoop

__all__ = ["IntermissionCallback", "fit"]

def fit(
    loop: TrialLoop,
    model: pl.LightningModule,
    *,
    monitor: str = "val_loss",
    datamodule: pl.LightningDataModule | None = None,
    train_dataloaders: Any = None,
    val_dataloaders: Any = None,
    **trainer_kwargs: Any,
) -> float:
    """Train `model` as one pausable trial with a `lightning.Trainer`; the best `monitor` value.

    Args:
        loop: The objective's `TrialLoop`.
        model: The `LightningModule` to train.
        monitor: The logged metric reported to Optuna at the end of every epoch.
        datamodule: The data, as a `LightningDataModule`, or:
        train_dataloaders: The training data loader(s), and
        val_dataloaders: the validation ones.
        **trainer_kwargs: `lightning.Trainer`'s arguments (`callbacks` included);
            `max_epochs` is the study's.

    Raises:
        TrialPaused: A pause stopped the trial; its checkpoint is stored.
        optuna.TrialPruned: The pruner stopped the trial.
    """
    if trainer_kwargs.get("enable_checkpointing") is False:
        raise ConfigurationError(
            "fit() checkpoints every trial (IntermissionCallback is a Lightning Checkpoint "
            "callback); leave out enable_checkpointing=False."
        )
    pausable = IntermissionCallback(loop, monitor=monitor)
    callbacks = [*(trainer_kwargs.pop("callbacks", None) or []), pausable]
    trainer = pl.Trainer(**{"max_epochs": loop.max_epochs, **trainer_kwargs, "callbacks": callbacks})
    trainer.fit(
        model, train_dataloaders=train_dataloaders, val_dataloaders=val_dataloaders,
        datamodule=datamodule, ckpt_path=pausable.ckpt_path(),
    )
    return pausable.outcome()


class IntermissionCallback(Checkpoint):
    """Makes a `lightning.Trainer` train one trial of a pausable study.

    It is a Lightning `Checkpoint` callback: Lightning calls it after the other
    callbacks (`EarlyStopping` included) and the module's hooks, so its checkpoints
    hold their state, and adds no `ModelCheckpoint` of its own (add one to keep
    Lightning's files too).

    Args:
        loop: The objective's `TrialLoop`: the trial, its checkpoints, the pause
            signal (`loop.context`), and `loop.generator`, checkpointed with the trial.
        monitor: The logged metric reported to Optuna at the end of every epoch
            (the last value logged in it), compared in the study's direction. An
            epoch without a validation reports nothing.
    """

    def __init__(self, loop: TrialLoop, *, monitor: str = "val_loss") -> None:
        if not monitor:
            raise ConfigurationError(f"monitor must name a logged metric, but got {monitor=}.")
        self.loop, self.context, self.monitor = loop, loop.context, monitor
        self._prepared = False
        self._ckpt_path: str | None = None
        self._staged: dict[str, Any] | None = None
        self._rng: dict[str, Any] | None = None
        self._io: TrialCheckpointIO | None = None
        self.progress = loop.progress  # the trial's progress, the loop's own record
        self._seconds_before = 0.0  # of the epoch in progress, in earlier attempts
        self._epoch_started = time.perf_counter()
        self._validated = False  # in the epoch in progress
        self._checked_safe = False
        self._said_epoch_end = False
        self._stopping = TrainerStop()
        self._plateau_due: list[tuple[int, Any]] = []  # (scheduler, metric) Lightning has yet to step
        self._sigterm: Any = None  # the study's SIGTERM handler, kept from Lightning's
        self._fitted = False
        self._paused_after: int | None = None
        self._paused_steps: int | None = None  # steps into the next epoch, when paused within it
        self._pruned: str | None = None

    def ckpt_path(self) -> str | None:
        """The checkpoint to pass as `trainer.fit(..., ckpt_path=...)`: None starts afresh.

        Loads the trial's latest valid checkpoint, verified, and says the trial
        started (the study stores its sampler then): call it after the objective's
        suggestions, right before `trainer.fit`. Later calls return the same path.

        Raises:
            CheckpointError: The latest valid checkpoint was not written by this callback.
        """
        if self._prepared:
            return self._ckpt_path
        self._prepared = True
        context, number = self.context, self.context.trial.number
        progress = self.progress
        progress.reported = context.reported_steps()
        loaded = context.load_latest(progress.reported)
        state = loaded.state
        if state is not None:
            assert loaded.epoch is not None
            ours = own_entry(state, context.checkpoints.path(loaded.epoch), number)
            self._resume_from(ours)
            self._ckpt_path = context.checkpoints.path(loaded.epoch, mid_epoch=ours["mid_epoch"])
            self._staged = state
            context.logger.info("%s", progress.continues_line(ours.get("steps_into_epoch")))
        from_epoch = None if state is None else progress.epoch
        self.loop.trainer_started(Restore(from_epoch, loaded.fallbacks, progress.lost_epochs()))
        return self._ckpt_path

    def outcome(self) -> float:
        """How `trainer.fit` ended: the best `monitor` value, or the pause or pruning.

        Raises:
            TrialPaused: A pause stopped the trial; its checkpoint is stored.
            optuna.TrialPruned: The pruner stopped the trial.
            CheckpointError: Its last checkpoint, written in the background, could not be stored.
        """
        if not self._fitted:
            raise IntermissionError("outcome() says how trainer.fit() ended: call it after trainer.fit().")
        self.context.checkpoints.wait()  # whatever it says, the last checkpoint is stored
        if self._pruned is not None:
            raise optuna.TrialPruned(self._pruned)
        if self._paused_after is not None:
            raise TrialPaused(self.context.trial.number, self._paused_after, steps_into_epoch=self._paused_steps)
        if self.progress.best_metric is None:
            raise IntermissionError(
                f"Trial {self.context.trial.number} trained {epochs_done(self.progress.epoch)} epochs without "
                f"a value of {self.monitor!r}: log it in validation_step (self.log({self.monitor!r}, loss))."
            )
        return self.progress.best_metric

    # --- Lightning's hooks ---------------------------------------------------------------

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Check the trainer, and route the trial's checkpoints through its verified store."""
        if stage != "fit":
            return
        check_trainer(trainer, self.context.max_epochs)
        if not self._prepared and self.ckpt_path() is not None:
            raise ConfigurationError(
                f"Trial {self.context.trial.number} has a checkpoint to continue from: pass "
                "trainer.fit(..., ckpt_path=callback.ckpt_path())."
            )
        self._io = TrialCheckpointIO(trainer.strategy.checkpoint_io)
        if self._staged is not None:
            assert self._ckpt_path is not None
            self._io.stage(self._ckpt_path, self._staged)
            self._staged = None
        trainer.strategy.checkpoint_io = self._io

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Set the global generators back to where the checkpoint was taken."""
        if self._rng is not None:
            restore_rng_state(self._rng)
            self._rng = None
        if self.context.pause_signal is not None and threading.current_thread() is threading.main_thread():
            self._sigterm = signal.getsignal(signal.SIGTERM)

    def on_sanity_check_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Leave SIGTERM to the study."""
        self._keep_sigterm()

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Leave SIGTERM to the study; check that Lightning continued from the trial's checkpoint,
        and give plateau schedulers the step of the epoch the checkpoint ended."""
        self._keep_sigterm()
        step_plateaus(trainer, self._plateau_due)
        self._plateau_due = []
        if self._ckpt_path is not None and (self._io is None or self._io.staged is not None):
            raise ConfigurationError(
                f"Trial {self.context.trial.number} continues from {self._ckpt_path!r}, but "
                f"trainer.fit() was given ckpt_path={trainer.ckpt_path!r}: pass "
                "ckpt_path=callback.ckpt_path()."
            )
        self._epoch_started = time.perf_counter()

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Start timing the epoch."""
        self._epoch_started, self._seconds_before, self._validated = time.perf_counter(), 0.0, False

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Note that the epoch was validated (the sanity check does not count)."""
        if not trainer.sanity_checking:
            self._validated = True

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        """With a pause requested, stop at this step if it is a boundary, after a checkpoint."""
        if trainer.should_stop or not self.context.should_pause() or not self._step_boundary(trainer, batch_idx):
            return
        self._paused_after, self._paused_steps = self.progress.epoch, batch_idx + 1
        with self._recording():
            self._save(trainer, trainer.current_epoch, mid_epoch=True)
        self._stop(trainer, validate=False)
        self.context.logger.info(
            "Trial %d pauses within epoch %d, after step %d: checkpoint %s.",
            self.context.trial.number, epochs_done(trainer.current_epoch), trainer.global_step, self.context.stored,
        )

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Report the epoch to Optuna, maybe prune, checkpoint it, maybe pause."""
        if self._paused_after is not None:
            return  # paused within the epoch: Lightning ends the epoch early, but it is not finished
        context, epoch = self.context, trainer.current_epoch
        seconds = round(self._seconds_before + time.perf_counter() - self._epoch_started, 4)
        metric = self._monitored(trainer, epoch)
        progress = self.progress
        with self._recording():
            if metric is not None and progress.needs_report(epoch):
                context.report(metric, epoch)
            improved = progress.finish_epoch(epoch, metric, seconds)
            if metric is not None and context.should_prune():
                self._pruned = f"Pruned after {epochs_done(epoch)} epochs with {self.monitor} {metric}."
                self._stop(trainer)
                return
            plateau_due = plateau_steps_due(trainer)
            if trainer.fit_loop.restarting:  # Lightning steps none for an epoch it resumed within
                step_plateaus(trainer, plateau_due)
                plateau_due = []
            self._save(trainer, epoch, best=improved, plateau_due=plateau_due)
            context.logger.info("%s", progress.epoch_line(context.stored, metric_name=self.monitor))
            if metric is not None and self.loop.on_epoch is not None:
                self.loop.on_epoch(epoch, metric)
        if progress.stopped_early:
            context.logger.info("%s", progress.stopped_early_line())
            self._stop(trainer)  # stopped early: the trial is complete
        elif epoch + 1 < context.max_epochs and not trainer.should_stop and context.should_pause():
            self._paused_after = epoch
            self._stop(trainer)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Give the trainer its settings and checkpoint IO back."""
        if stage != "fit":
            return
        self._fitted = True
        self._stopping.restore(trainer)
        if self._io is not None and trainer.strategy.checkpoint_io is self._io:
            trainer.strategy.checkpoint_io = self._io.wrapped

    # --- What the hooks share ------------------------------------------------------------

    def _step_boundary(self, trainer: pl.Trainer, batch_idx: int) -> bool:
        """Whether training can stop after this step and continue exactly from a checkpoint."""
        if not loaders_say_where_they_are(trainer):
            if not self._said_epoch_end:
                self._said_epoch_end = True
                self.context.logger.info(
                    "Trial %d pauses at the end of its epoch: its training data loader cannot say where it "
                    "is (use ResumableDataLoader(..., generator=loop.generator) to pause at the next step).",
                    self.context.trial.number,
                )
            return False
        return is_step_boundary(trainer, batch_idx)

    def _monitored(self, trainer: pl.Trainer, epoch: int) -> float | None:
        """The epoch's value of `monitor`; None when the epoch was not validated."""
        if trainer.enable_validation and not self._validated:
            return None
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            raise ConfigurationError(
                f"IntermissionCallback(monitor={self.monitor!r}) found no such metric after epoch "
                f"{epochs_done(epoch)}; logged: {sorted(trainer.callback_metrics)}. Log it with "
                f"self.log({self.monitor!r}, ...) in validation_step, or monitor one of those."
            )
        metric = float(value)
        if not math.isfinite(metric):
            raise MetricNotFinite(
                f"Trial {self.context.trial.number} logged {self.monitor} {metric} in epoch "
                f"{epochs_done(epoch)}; nothing of that epoch was stored"
            )
        return metric

    def _save(
        self, trainer: pl.Trainer, epoch: int, *, best: bool = False, mid_epoch: bool = False,
        plateau_due: list[tuple[int, Any]] | None = None,
    ) -> None:
        """Store Lightning's checkpoint and ours under `epoch` in the trial's verified store
        (written in the background unless background checkpoints are off)."""
        assert self._io is not None
        checkpoints = self.context.checkpoints
        ours = self._own_state(trainer, mid_epoch=mid_epoch, plateau_due=plateau_due or [])

        def write(checkpoint: dict[str, Any]) -> None:
            payload = {**checkpoint, STATE_KEY: ours}
            if not self._checked_safe:
                refuse_unsafe(payload, checkpoints.path(epoch, mid_epoch=mid_epoch))
                self._checked_safe = True
            self.context.store(epoch, payload, last_epoch=self.progress.epoch, best=best, mid_epoch=mid_epoch)

        with self._io.routing(checkpoints.path(epoch, mid_epoch=mid_epoch), write):
            # Lightning's weights_only here means "model weights alone": the full training state
            # is saved; every load goes through TrialCheckpoints with torch.load(weights_only=True).
            trainer.save_checkpoint(checkpoints.path(epoch, mid_epoch=mid_epoch), weights_only=False)

    def _own_state(
        self, trainer: pl.Trainer, *, mid_epoch: bool, plateau_due: list[tuple[int, Any]]
    ) -> dict[str, Any]:
        """What a checkpoint holds besides Lightning's (`_lightning_restore.py`)."""
        return capture_own_state(
            trainer, trial_number=self.context.trial.number, progress_state=self.progress.state_dict(),
            epoch=self.progress.epoch, steps_into_epoch=self._paused_steps if mid_epoch else None,
            seconds_into_epoch=self._seconds_before + time.perf_counter() - self._epoch_started if mid_epoch else 0.0,
            validated=self._validated and mid_epoch, plateau_due=plateau_due, generator=self.loop.generator,
        )

    def _resume_from(self, ours: dict[str, Any]) -> None:
        """Take back this callback's counts and the generators' states from a checkpoint."""
        self.progress.load_state_dict(ours, epoch=ours["epoch"])
        self._seconds_before = ours["seconds_into_epoch"]
        self._validated = ours["validated"]
        self._plateau_due = list(ours["plateau_steps_due"])
        self.loop.generator.set_state(ours["generator"])
        self._rng = ours["rng"]  # set back once Lightning is about to train (on_fit_start)

    def _stop(self, trainer: pl.Trainer, *, validate: bool = True) -> None:
        """Stop training through Lightning's own flag (`validate=False`: no extra validation)."""
        self._stopping.stop(trainer, validate=validate)

    def _keep_sigterm(self) -> None:
        """Put the study's SIGTERM handler back in place of Lightning's.

        Lightning's handler (installed on the main thread) ends `fit` with SystemExit after
        the current step; in a study, SIGTERM asks for a pause, which this callback carries
        out at that very step, and the study records the trial as paused. Lightning puts
        the same handler back when `fit` ends.
        """
        if self._sigterm is not None and signal.getsignal(signal.SIGTERM) is not self._sigterm:
            signal.signal(signal.SIGTERM, self._sigterm)

    def _recording(self) -> contextlib.AbstractContextManager[None]:
        """Around storing a checkpoint: a study stopped at once stores nothing more."""
        signal = self.context.pause_signal
        if signal is None:
            return contextlib.nullcontext()
        return signal.recording(self.context.trial.number, self.progress.epoch)

