"""Where a `lightning.Trainer` can stop for a pause and continue exactly, and how it stops.

A step is a boundary when every training data loader can say where it is
(`state_dict()`/`load_state_dict()`), its gradients are not still accumulating, it is not
the epoch's last step and no validation follows it. Training stops through Lightning's own
`trainer.should_stop`, without the extra validation Lightning runs when a callback stops
it within an epoch.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.utilities.combined_loader import CombinedLoader

from prefect_intermission.errors import ConfigurationError


def check_trainer(trainer: pl.Trainer, max_epochs: int) -> None:
    """Refuse settings under which the study's epochs or a pause would not hold."""
    if trainer.max_epochs != max_epochs:
        raise ConfigurationError(
            f"The Trainer's max_epochs must be the study's, {max_epochs} (loop.max_epochs), but "
            f"got max_epochs={trainer.max_epochs}."
        )
    if trainer.max_steps != -1:
        raise ConfigurationError(
            f"A trial trains for the study's max_epochs; leave out max_steps (got {trainer.max_steps})."
        )
    if trainer.min_epochs or trainer.min_steps:
        raise ConfigurationError(
            "Lightning keeps training until min_epochs/min_steps whatever stops it, a pause "
            f"included; leave them out (got min_epochs={trainer.min_epochs}, min_steps={trainer.min_steps})."
        )


def loaders_say_where_they_are(trainer: pl.Trainer) -> bool:
    """Whether every training data loader has `state_dict()` and `load_state_dict()`."""
    return all(
        callable(getattr(d, "state_dict", None)) and callable(getattr(d, "load_state_dict", None))
        for d in CombinedLoader(trainer.train_dataloader).flattened
    )


def is_step_boundary(trainer: pl.Trainer, batch_idx: int) -> bool:
    """Whether, with resumable loaders, training can stop after step `batch_idx` of the epoch."""
    done = batch_idx + 1
    if done >= trainer.num_training_batches or done % trainer.accumulate_grad_batches:
        return False  # the epoch's end comes next, or gradients are still accumulating
    every = trainer.val_check_batch
    if trainer.enable_validation and isinstance(every, int) and every > 0:
        counted = done if trainer.check_val_every_n_epoch is not None else trainer.fit_loop.total_batch_idx + 1
        if counted % every == 0:
            return False  # a validation follows: the pause waits for the step after it
    return True


class TrainerStop:
    """Stops a trainer through Lightning's flag, and gives back what stopping changed."""

    def __init__(self) -> None:
        self._check_val: tuple[Any] | None = None

    def stop(self, trainer: pl.Trainer, *, validate: bool = True) -> None:
        """Set `trainer.should_stop`; `validate=False` within an epoch: no extra validation."""
        trainer.should_stop = True
        if not validate and self._check_val is None:
            # Lightning validates once more when a callback stops training mid-epoch (for
            # EarlyStopping's sake). A pause does not end training: no validation the
            # uninterrupted run would not have (nor its time), so no epoch is checked now.
            self._check_val = (trainer.check_val_every_n_epoch,)
            trainer.check_val_every_n_epoch = trainer.current_epoch + 2

    def restore(self, trainer: pl.Trainer) -> None:
        """Give the trainer back the validation setting `stop` changed."""
        if self._check_val is not None:
            trainer.check_val_every_n_epoch = self._check_val[0]
            self._check_val = None
