"""What a `TrialLoop` checkpoint holds, and how it comes back into the loop's objects.

A checkpoint of the loop holds the trial's progress (`TrialProgress.state_dict()`), the
`state_dict()` of every object given to `loop.epochs()` (model, optimizer, scheduler,
scaler), the user's `extra_state`, the global Python, NumPy and torch generators and the
loop's data generator; a checkpoint within an epoch adds the data position
(`within_epoch.py`).
"""

from __future__ import annotations

from typing import Any

import torch

from prefect_intermission.errors import CheckpointError
from prefect_intermission.training._rng import capture_rng_state, restore_rng_state
from prefect_intermission.training.trial_progress import TrialProgress


def capture(
    *,
    trial_number: int,
    global_step: int,
    progress: TrialProgress,
    components: dict[str, Any],
    extra_state: dict[str, Any],
    generator: torch.Generator,
) -> dict[str, Any]:
    """The loop's checkpoint, taken now."""
    return {
        "trial_number": trial_number,
        "epoch": progress.epoch,
        "global_step": global_step,
        **progress.state_dict(),
        "components": {name: obj.state_dict() for name, obj in components.items()},
        "extra_state": extra_state,
        "rng": capture_rng_state(),
        "loader_generator": generator.get_state(),
    }


def restore(
    state: dict[str, Any],
    *,
    where: str,
    trial_number: int,
    components: dict[str, Any],
    extra_state: dict[str, Any],
    generator: torch.Generator,
) -> None:
    """Load checkpoint `state` (read from `where`) into the objects, the generators and
    `extra_state`; a clear error when the objects are not the ones the trial started with."""
    saved = state["components"]
    if set(saved) != set(components):
        raise CheckpointError(
            f"Checkpoint {where!r} holds {sorted(saved)} but loop.epochs() was given "
            f"{sorted(components)}; pass the same objects the trial started with."
        )
    for name, obj in components.items():
        try:
            obj.load_state_dict(saved[name])
        except (RuntimeError, KeyError, ValueError) as e:
            raise CheckpointError(
                f"The {name} of trial {trial_number} does not match its checkpoint "
                f"{where!r}: {e}. Build the {name} the same way as when the trial started "
                "(same suggested parameters, same architecture)."
            ) from e
    restore_rng_state(state["rng"])
    generator.set_state(state["loader_generator"])
    extra_state.clear()
    extra_state.update(state["extra_state"])
