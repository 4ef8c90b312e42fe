"""What a Lightning checkpoint of a trial holds besides Lightning's own, and how it comes back.

Lightning's checkpoint (`Trainer.save_checkpoint`) has the model, optimizers, schedulers,
callbacks, loop progress and the data loaders' position. Under `STATE_KEY` the callback
adds what Lightning leaves out: the global Python, NumPy and torch generators,
`loop.generator`, the trial's progress, the time and validation of an epoch paused within,
and the `ReduceLROnPlateau` steps Lightning takes outside its checkpoints.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch

from prefect_intermission.errors import CheckpointError
from prefect_intermission.training._rng import capture_rng_state

#: Where a checkpoint holds what Lightning leaves out (and the callback's own state).
STATE_KEY = "prefect_intermission"


def own_entry(state: dict[str, Any], path: str, trial_number: int) -> dict[str, Any]:
    """The callback's entry of a loaded checkpoint, or a clear error when another loop wrote it."""
    ours = state.get(STATE_KEY)
    if not isinstance(ours, dict):
        raise CheckpointError(
            f"{path!r} holds no {STATE_KEY!r} entry: trial {trial_number} was started by another "
            "training loop. Continue it with that one, or delete its checkpoints to train it again "
            "from the start."
        )
    return ours


def capture_own_state(
    trainer: pl.Trainer,
    *,
    trial_number: int,
    progress_state: dict[str, Any],
    epoch: int,
    steps_into_epoch: int | None,
    seconds_into_epoch: float,
    validated: bool,
    plateau_due: list[tuple[int, Any]],
    generator: torch.Generator,
) -> dict[str, Any]:
    """The callback's entry of a checkpoint taken now (`steps_into_epoch` None: at an epoch's end)."""
    return {
        "trial_number": trial_number,
        "epoch": epoch,
        "mid_epoch": steps_into_epoch is not None,
        "global_step": trainer.global_step,
        "steps_into_epoch": steps_into_epoch,
        **progress_state,
        "seconds_into_epoch": round(seconds_into_epoch, 4),
        "validated": validated,
        "plateau_steps_due": plateau_due,
        "rng": capture_rng_state(),
        "generator": generator.get_state(),
    }


def plateau_steps_due(trainer: pl.Trainer) -> list[tuple[int, Any]]:
    """The `ReduceLROnPlateau` steps due at this epoch's end, as (index, metric).

    Lightning takes them right after `on_train_epoch_end`, where the epoch's checkpoint is
    taken, and neither for the epoch a checkpoint ended nor for one it resumed within
    (it does not checkpoint the metrics): the callback takes those itself.
    """
    if not trainer.lightning_module.automatic_optimization:
        return []
    due = []
    for index, config in enumerate(trainer.lr_scheduler_configs):
        if config.reduce_on_plateau and config.interval == "epoch" and (trainer.current_epoch + 1) % config.frequency == 0:
            metric = trainer.callback_metrics.get(config.monitor) if config.monitor else None
            if metric is not None:
                due.append((index, metric.detach().clone() if isinstance(metric, torch.Tensor) else metric))
    return due


def step_plateaus(trainer: pl.Trainer, steps: list[tuple[int, Any]]) -> None:
    """Take plateau schedulers' steps as Lightning does (through the module's `lr_scheduler_step`)."""
    for index, metric in steps:
        trainer.lightning_module.lr_scheduler_step(trainer.lr_scheduler_configs[index].scheduler, metric)
