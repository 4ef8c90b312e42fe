"""Pausable Hugging Face `Trainer` runs: a `TrainerCallback` for an objective that trains with one.

    from prefect_intermission.integrations.transformers import IntermissionCallback

    def objective(trial: optuna.Trial, loop: TrialLoop) -> float:
        lr = trial.suggest_float("lr", 1e-5, 1e-3, log=True)
        pausable = IntermissionCallback(loop)  # reports eval_loss (or metric_for_best_model) per epoch
        args = pausable.training_arguments(learning_rate=lr, per_device_train_batch_size=16)
        trainer = Trainer(model=build_model(), args=args, train_dataset=train, eval_dataset=val)
        return pausable.train(trainer)  # the best eval_loss

At the end of every epoch the callback has the `Trainer` evaluate, reports the metric to
Optuna (the pruner may stop the trial), and stores the checkpoint folder the `Trainer`
writes in the trial's verified store (manifest, checksums, fallback to an older one; marked
as the best epoch's when its metric is). When the study pauses, the trial stops at its next
optimizer step through the `Trainer`'s own switches (`control.should_save`,
`control.should_training_stop`), stores that step's checkpoint, and `train` raises
`TrialPaused`. Run again, `train` unpacks the latest valid checkpoint and passes it to
`trainer.train(resume_from_checkpoint=...)`: the `Trainer` restores weights (a PEFT model's
adapter), optimizer, scheduler and RNG states and skips the batches already trained, so the
resumed trial trains bit for bit like one that never paused.

To call `trainer.train` yourself, end as with the Lightning callback:

    trainer.train(resume_from_checkpoint=pausable.resume_from_checkpoint(args.output_dir))
    return pausable.outcome()  # the best metric; raises the pause or the pruning

Needs `pip install 'prefect-intermission[transformers]'`.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import optuna
import torch

try:
    from transformers import (
        Trainer,
        TrainerCallback,
        TrainerControl,
        TrainerState,
        TrainingArguments,
    )
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError(
        "prefect_intermission.integrations.transformers needs Hugging Face Transformers: "
        "pip install 'prefect-intermission[transformers]'"
    ) from e

from prefect_intermission._counting import epochs_done
from prefect_intermission._deprecation import warn_deprecated
from prefect_intermission.errors import (
    CheckpointError,
    ConfigurationError,
    MetricNotFinite,
    TrialPaused,
)
from prefect_intermission.integrations._checkpoint_folder import (
    CHECKPOINT_KIND,
    pack_folder,
    unpack_folder,
)
from prefect_intermission.integrations._metric_name import (
    DEFAULT_METRIC,
    direction_conflict,
    given_metric,
    reported_metric,
)
from prefect_intermission.training.context import TrialContext
from prefect_intermission.training.loop import Restore, TrialLoop
from prefect_intermission.training.trial_progress import ProgressView, TrialProgress

__all__ = ["IntermissionCallback"]


class IntermissionCallback(TrainerCallback, ProgressView):
    """Makes a `Trainer` run one pausable, pruned, checkpointed trial of a study.

    Args:
        loop: The objective's `TrialLoop` (or a bare `TrialContext`, without the study's
            progress and pause rules).
        metric_for_best_model: The evaluation metric reported to Optuna, named as
            `TrainingArguments(metric_for_best_model=...)` names it: with or without the
            `eval_` prefix (`"loss"` or `"eval_loss"`). Default: the `Trainer`'s own
            `args.metric_for_best_model` when it sets one, else `"eval_loss"`. Compared in
            the study's direction: arguments whose `greater_is_better` says otherwise for it
            are refused before training.
        metric: The same, by the name earlier releases gave it.

    With the study's `patience`, training stops (and the trial completes) after that many
    epochs in a row without a better metric, as with `TrialLoop`.

    Attributes:
        metric: The metric reported, with its `eval_` prefix (the arguments' once training starts,
            when none was given).
        progress: The trial's progress (`TrialProgress`): the loop's own record, or one of its
            own with a bare `TrialContext`. `epoch`, `best_metric`, `last_metric`,
            `epochs_without_improvement` and `stopped_early` read it.
        resumed_from_step: The optimizer step the run continued after, or None.
    """

    def __init__(
        self,
        loop: TrialLoop | TrialContext,
        *,
        metric_for_best_model: str | None = None,
        metric: str | None = None,
    ) -> None:
        self._given_metric = given_metric(metric_for_best_model=metric_for_best_model, metric=metric)
        self._loop = loop if isinstance(loop, TrialLoop) else None
        self.context = loop.context if isinstance(loop, TrialLoop) else loop
        self.metric = self._given_metric or DEFAULT_METRIC
        self.progress = (
            self._loop.progress if self._loop is not None
            else TrialProgress(self.context.trial.number, self.context.max_epochs, self.context.direction)
        )
        self.resumed_from_step: int | None = None
        self._epoch_started = 0.0
        self._seconds_before = 0.0  # of the current epoch, trained before a pause
        self._restored = False
        self._resume_folder: str | None = None
        self._output_dir: str | None = None
        self._evaluating_epoch: int | None = None  # the epoch whose end is being evaluated
        self._improved = False
        self._stopped_at_step = False
        self._paused_after: int | None = None  # the last finished epoch when training paused
        self._paused_steps: int | None = None  # and the steps into the next one
        self._pruned = False

    # ---- Setting a trainer up -----------------------------------------------------------

    @property
    def seed(self) -> int:
        """The trial's seed, in the range `TrainingArguments(seed=...)` takes."""
        return self.context.seed % 2**32

    @property
    def output_dir(self) -> str:
        """A local folder of this attempt for the `Trainer`'s checkpoint folders (emptied as
        each one is stored; removed when `train` returns)."""
        if self._output_dir is None:
            self._output_dir = tempfile.mkdtemp(prefix=f"intermission-trial-{self.context.trial.number}-")
        return self._output_dir

    def training_arguments(self, **kwargs: Any) -> TrainingArguments:
        """`TrainingArguments` for this trial: `kwargs` over `output_dir`, `num_train_epochs`
        (the study's `max_epochs`), `seed`, `eval_strategy="epoch"`, `save_strategy="no"` (this
        callback saves at every epoch end and at a pause), and memory pinned only for an
        accelerator to copy from."""
        defaults: dict[str, Any] = {
            "num_train_epochs": self.context.max_epochs,
            "seed": self.seed,
            "eval_strategy": "epoch",
            "save_strategy": "no",
            "report_to": "none",
            "dataloader_pin_memory": torch.accelerator.is_available(),
        }
        if "output_dir" not in kwargs:
            defaults["output_dir"] = self.output_dir
        return TrainingArguments(**{**defaults, **kwargs})

    # ---- Training a trial ---------------------------------------------------------------

    def train(self, trainer: Trainer, **train_kwargs: Any) -> float:
        """Train the trial with `trainer` from where it stopped; its best metric.

        Adds this callback to `trainer` if it is not there yet.

        Raises:
            TrialPaused: The study paused; the checkpoint is stored.
            optuna.TrialPruned: The pruner stopped the trial.
        """
        if self not in trainer.callback_handler.callbacks:
            trainer.add_callback(self)
        self.metric = reported_metric(self._given_metric, trainer.args)
        if trainer.eval_dataset is None:
            raise ConfigurationError(
                f"The Trainer of trial {self.context.trial.number} has no eval_dataset: the trial "
                f"reports {self.metric} to Optuna after every epoch. Pass Trainer(eval_dataset=...)."
            )
        try:
            checkpoint = self.resume_from_checkpoint(trainer.args.output_dir)
            if not self.stopped_early:  # else it stopped early, then the process did before telling Optuna
                trainer.train(resume_from_checkpoint=checkpoint, **train_kwargs)
        finally:
            self._clean_up()
        return self.outcome()

    def resume_from_checkpoint(self, output_dir: str) -> str | None:
        """Unpack the trial's latest valid checkpoint under `output_dir`; the folder to pass as
        `trainer.train(resume_from_checkpoint=...)`, or None to start from scratch.

        Call it once per attempt, before `trainer.train` (`train` does).

        Raises:
            CheckpointError: The checkpoint was not written by this callback.
        """
        context, number = self.context, self.context.trial.number
        progress = self.progress
        progress.reported = context.reported_steps()
        loaded = context.load_latest(progress.reported)
        self._restored = True
        state = loaded.state
        if state is None:
            self._started(Restore(None, loaded.fallbacks, progress.lost_epochs()))
            return None
        if state.get("trainer") != CHECKPOINT_KIND:
            raise CheckpointError(
                f"The checkpoint of epoch {loaded.epoch} of trial {number} was not written by "
                f"IntermissionCallback (it says {state.get('trainer')!r}); train the trial the way it "
                "started, or delete its checkpoints to start it again."
            )
        progress.load_state_dict(state, epoch=state["last_finished_epoch"])
        self._seconds_before = state["seconds_into_epoch"]
        self.resumed_from_step = state["global_step"]
        folder = unpack_folder(state, os.path.join(output_dir, f"checkpoint-{state['global_step']}"))
        self._resume_folder = str(folder)
        context.logger.info("%s", progress.continues_line(state.get("steps_into_epoch")))
        self._started(Restore(None if progress.epoch < 0 else progress.epoch, loaded.fallbacks, progress.lost_epochs()))
        return self._resume_folder

    def outcome(self) -> float:
        """How `trainer.train` ended: the trial's best metric, or the pause or pruning.

        Raises:
            TrialPaused: The study paused; the checkpoint is stored.
            optuna.TrialPruned: The pruner stopped the trial.
            CheckpointError: Its last checkpoint, written in the background, could not be stored.
        """
        number = self.context.trial.number
        self.context.checkpoints.wait()  # whatever it says, the last checkpoint is stored
        if self._pruned:
            raise optuna.TrialPruned(
                f"Pruned after {epochs_done(self.epoch)} epochs with metric {self.last_metric}."
            )
        if self._paused_after is not None:
            raise TrialPaused(number, self._paused_after, steps_into_epoch=self._paused_steps)
        if self.best_metric is None:
            raise ConfigurationError(
                f"Trial {number} trained no epoch to its end; train for the study's max_epochs "
                f"({self.context.max_epochs}) with an eval_dataset."
            )
        return self.best_metric

    def finish(self) -> float:
        """Deprecated: `outcome()`, the name the Lightning callback's has too."""
        warn_deprecated("IntermissionCallback.finish()", "IntermissionCallback.outcome()")
        return self.outcome()

    # ---- TrainerCallback events -----------------------------------------------------------

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        """Refuse settings a pause could not survive, before the first step."""
        self._check(args)
        self._stopped_at_step = False
        self._paused_after = self._paused_steps = None
        self._pruned = False

    def on_epoch_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        """Start the epoch's clock (a resumed epoch counts the time trained before its pause)."""
        self._epoch_started = time.perf_counter() - self._seconds_before
        self._seconds_before = 0.0

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        """Stop after this step, saving it, when the study pauses (an epoch's last step ends
        the epoch first)."""
        within_epoch = not float(state.epoch).is_integer()
        if within_epoch and state.global_step < state.max_steps and self.context.should_pause():
            control.should_save = True
            control.should_training_stop = True
            self._stopped_at_step = True

    def on_epoch_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        """Have the epoch evaluated and saved, unless training stopped within it."""
        if self._stopped_at_step:  # the step's checkpoint is stored; half an epoch is not evaluated
            control.should_evaluate = control.should_save = False
            return
        self._evaluating_epoch = round(state.epoch) - 1
        control.should_evaluate = True
        control.should_save = True

    def on_evaluate(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        metrics: dict[str, float],
        **kwargs: Any,
    ) -> None:
        """Report an epoch's metric to Optuna and ask the pruner."""
        epoch = self._evaluating_epoch
        if epoch is None:  # an evaluation within an epoch (eval_strategy="steps"): not reported
            return
        context, number = self.context, self.context.trial.number
        metric = float(self._metric_of(metrics))
        if not math.isfinite(metric):
            raise MetricNotFinite(
                f"Trial {number} reported metric {metric} after epoch {epochs_done(epoch)}; nothing of "
                "that epoch was stored"
            )
        with self._recording():
            if self.progress.needs_report(epoch):  # an epoch trained again after a crash keeps its report
                context.report(metric, epoch)
        self._improved = self.progress.finish_epoch(epoch, metric, time.perf_counter() - self._epoch_started)
        if context.should_prune():
            self._pruned = True
            control.should_training_stop = True
            control.should_save = False
            self._evaluating_epoch = None

    def on_save(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        """Store the checkpoint folder the `Trainer` just wrote, then pause if asked to."""
        folder = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
        at_epoch_end = self._evaluating_epoch is not None
        if not at_epoch_end and float(state.epoch).is_integer():
            return  # an epoch's last step: the epoch's own checkpoint follows at its end
        epoch = self._evaluating_epoch if at_epoch_end else math.floor(state.epoch)
        seconds_into_epoch = 0.0 if at_epoch_end else time.perf_counter() - self._epoch_started
        payload = {
            "trainer": CHECKPOINT_KIND,
            "epoch": epoch,
            "last_finished_epoch": self.epoch,
            "global_step": state.global_step,
            "steps_into_epoch": None if at_epoch_end else _steps_into_epoch(state, self.epoch),
            **self.progress.state_dict(),
            "seconds_into_epoch": seconds_into_epoch,
            **pack_folder(folder),
        }
        with self._recording():
            path = self.context.store(
                epoch, payload, last_epoch=self.epoch, best=at_epoch_end and self._improved, mid_epoch=not at_epoch_end
            )
        shutil.rmtree(folder, ignore_errors=True)  # the store has it
        if at_epoch_end:
            self._epoch_recorded(epoch, state, control)
        else:
            self._log_step_checkpoint(state, path)
            if self._stopped_at_step:
                self._paused_after = self.epoch
                self._paused_steps = _steps_into_epoch(state, self.epoch) or None

    # ---- Inside ------------------------------------------------------------------------

    def _epoch_recorded(self, epoch: int, state: TrainerState, control: TrainerControl) -> None:
        """Say the epoch is stored, let the study hear of it, and pause if it asks to."""
        context = self.context
        self._evaluating_epoch = None
        context.logger.info("%s", self.progress.epoch_line(context.stored))
        if self._loop is not None and self._loop.on_epoch is not None:
            self._loop.on_epoch(epoch, self.last_metric)  # the study's progress and pause rules
        if self.stopped_early:
            context.logger.info("%s", self.progress.stopped_early_line())
            control.should_training_stop = True
        elif state.global_step < state.max_steps and context.should_pause():
            control.should_training_stop = True
            self._paused_after = epoch

    def _log_step_checkpoint(self, state: TrainerState, path: str) -> None:
        self.context.logger.info(
            "Trial %d took a checkpoint at step %d of %d (within epoch %d of %d), %s %s.",
            self.context.trial.number, state.global_step, state.max_steps, math.floor(state.epoch) + 1,
            self.context.max_epochs, f"{self.context.stored} at", path,
        )

    def _metric_of(self, metrics: dict[str, float]) -> float:
        if self.metric in metrics:
            return metrics[self.metric]
        raise ConfigurationError(
            f"The metric reported to Optuna, {self.metric!r}, is not among the evaluation metrics "
            f"{sorted(name for name in metrics if name.startswith('eval_'))}; name one of them: "
            "IntermissionCallback(loop, metric_for_best_model=...)."
        )

    def _check(self, args: TrainingArguments) -> None:
        """Refuse a trainer started without its checkpoint, and arguments it could not pause with."""
        if not self._restored:
            raise ConfigurationError(
                "IntermissionCallback: the trial's checkpoint was not looked for before training. "
                "Train with pausable.train(trainer), or call trainer.train(resume_from_checkpoint="
                "pausable.resume_from_checkpoint(args.output_dir))."
            )
        wrong = refused_arguments(args, self.context.max_epochs)
        if wrong:
            raise ConfigurationError(
                f"TrainingArguments of trial {self.context.trial.number}: {'; '.join(wrong)}. "
                "IntermissionCallback.training_arguments(...) gives arguments that fit."
            )
        self.metric = reported_metric(self._given_metric, args)
        conflict = direction_conflict(self.metric, args, self.context.direction)
        if conflict is not None:
            raise ConfigurationError(f"TrainingArguments of trial {self.context.trial.number}: {conflict}.")

    @contextlib.contextmanager
    def _recording(self) -> Iterator[None]:
        """Around a report or a checkpoint: none starts once the study is stopped at once."""
        signal = self.context.pause_signal
        if signal is None:
            yield
        else:
            with signal.recording(self.context.trial.number, self.epoch):
                yield

    def _started(self, restore: Restore) -> None:
        """Tell the study the trial starts (it stores its sampler, shows progress, records a
        continuation), as `TrialLoop.epochs()` does."""
        if self._loop is not None:
            self._loop.trainer_started(restore)

    def _clean_up(self) -> None:
        """Remove the unpacked checkpoint folder, and this attempt's own output folder."""
        for folder in (self._resume_folder, self._output_dir):
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)
        self._resume_folder = self._output_dir = None


def refused_arguments(args: TrainingArguments, max_epochs: int) -> list[str]:
    """What is wrong with `args` for a trial of `max_epochs` epochs that must pause and resume
    exactly: each as `"<argument> <why>"`; empty when nothing is."""
    rules = {
        "num_train_epochs": (
            args.max_steps <= 0 and args.num_train_epochs != max_epochs,
            f"must be the study's max_epochs ({max_epochs}), but got {args.num_train_epochs}",
        ),
        "max_steps": (args.max_steps > 0, f"must be unset: the study counts epochs (got {args.max_steps})"),
        "save_strategy": (
            args.save_strategy == "best",
            "'best' saves only improving epochs; a paused trial needs every epoch's checkpoint "
            "(the study marks the best one itself)",
        ),
        "save_only_model": (args.save_only_model, "leaves out the optimizer and RNG states a resume needs"),
        "ignore_data_skip": (args.ignore_data_skip, "would train the batches before a pause again"),
        "load_best_model_at_end": (
            args.load_best_model_at_end,
            "cannot see the best checkpoint of an earlier attempt; `intermission best` writes a "
            "trial's best weights",
        ),
        "world_size": (args.world_size > 1, "one process trains a trial"),
    }
    return [f"{name} {why}" for name, (wrong, why) in rules.items() if wrong]


def _steps_into_epoch(state: TrainerState, last_finished_epoch: int) -> int:
    """The optimizer steps the `Trainer` has taken into the epoch after `last_finished_epoch`."""
    per_epoch = state.max_steps / state.num_train_epochs
    return state.global_step - round((last_finished_epoch + 1) * per_epoch)
