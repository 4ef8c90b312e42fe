"""A `TrialLoop`'s steps within an epoch: when a checkpoint is due between epoch ends, and
where the tracked data loaders are, so that a trial continued within an epoch goes on with
the next batch, in the same order."""

from __future__ import annotations

import time
from typing import Any

from prefect_intermission.errors import CheckpointError, ConfigurationError


class WithinEpoch:
    """The step count and data position of the epoch a trial is training.

    Args:
        checkpoint_every_steps: A checkpoint is due every this many steps (None: never).
        checkpoint_every_seconds: A checkpoint is due once this long has passed (None: never).

    Attributes:
        steps: Steps counted in the current epoch.
        data: The tracked data loaders (anything with `state_dict()`/`load_state_dict()`).
    """

    def __init__(self, *, checkpoint_every_steps: int | None, checkpoint_every_seconds: float | None) -> None:
        self.checkpoint_every_steps = checkpoint_every_steps
        self.checkpoint_every_seconds = checkpoint_every_seconds
        self.steps = 0
        self.data: list[Any] = []
        self._since_checkpoint = 0
        self._last_checkpoint = time.monotonic()
        self._resumed: dict[str, Any] | None = None

    def track(self, data: Any) -> Any:
        """Checkpoint `data`'s position within the epoch; returns it."""
        if not (callable(getattr(data, "state_dict", None)) and callable(getattr(data, "load_state_dict", None))):
            raise ConfigurationError(
                f"loop.track_data() needs an object with state_dict() and load_state_dict(), but got "
                f"{type(data).__name__}; use loop.data_loader(dataset, ...) for a map-style dataset."
            )
        self.data.append(data)
        return data

    def start_epoch(self) -> float:
        """Begin an epoch (the rest of one continued within it); the seconds of it trained before."""
        resumed, self._resumed = self._resumed, None
        self.steps = resumed["steps"] if resumed else 0
        return resumed["seconds"] if resumed else 0.0

    def count(self, n: int) -> None:
        """Count `n` steps."""
        self.steps += n
        self._since_checkpoint += n

    def checkpoint_due(self) -> bool:
        """Whether `checkpoint_every_steps` or `checkpoint_every_seconds` calls for a checkpoint now."""
        every_steps, every_seconds = self.checkpoint_every_steps, self.checkpoint_every_seconds
        return bool(
            (every_steps and self._since_checkpoint >= every_steps)
            or (every_seconds and time.monotonic() - self._last_checkpoint >= every_seconds)
        )

    def checkpointed(self) -> None:
        """A checkpoint was just taken (within the epoch or at its end): none is due before the next interval."""
        self._since_checkpoint, self._last_checkpoint = 0, time.monotonic()

    def position(self, trial_number: int, seconds_into_epoch: float) -> dict[str, Any]:
        """What a checkpoint within the epoch holds besides the loop's state: steps, time, data position."""
        if not self.data:
            raise ConfigurationError(
                f"Trial {trial_number} cannot checkpoint within an epoch: the data position is "
                "unknown. Build the loader with loop.data_loader(dataset, ...) (or register your "
                "own with loop.track_data(...)) before loop.epochs(), or use pause_granularity='epoch' "
                "without checkpoint_every_steps/seconds."
            )
        return {"steps": self.steps, "seconds": seconds_into_epoch, "data": [data.state_dict() for data in self.data]}

    def restore(self, position: dict[str, Any], where: str) -> None:
        """Put the tracked data back where checkpoint `where`, taken within an epoch, left it;
        the next `start_epoch` continues that epoch."""
        if len(position["data"]) != len(self.data):
            raise CheckpointError(
                f"Checkpoint {where!r} holds the position of {len(position['data'])} data loader(s), but "
                f"{len(self.data)} are tracked now; make them with loop.data_loader()/track_data() "
                "before loop.epochs(), the same way as when the trial started."
            )
        for data, saved in zip(self.data, position["data"]):
            data.load_state_dict(saved)
        self._resumed = position

    def release(self) -> None:
        """Let go of the data loaders (and their worker processes)."""
        self.data = []
