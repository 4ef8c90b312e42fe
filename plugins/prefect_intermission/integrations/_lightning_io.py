"""The trainer's checkpoint IO, with a trial's own checkpoints routed through its verified store.

Lightning writes and reads every checkpoint through its strategy's `CheckpointIO`; the
Lightning integration wraps it, so that `Trainer.save_checkpoint` and `fit(ckpt_path=...)`
reach the trial's `TrialCheckpoints` while any other checkpoint (a `ModelCheckpoint`'s)
goes where it always did. Imported only by `integrations.lightning`, after its check that
Lightning is installed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from lightning.fabric.plugins.io.checkpoint_io import CheckpointIO

from prefect_intermission.errors import IntermissionError


class TrialCheckpointIO(CheckpointIO):
    """The trainer's checkpoint IO, with the trial's own checkpoints routed through its verified store.

    A save to the path being routed goes to the callback's writer; a load of the staged
    path gets the checkpoint the callback already loaded and verified. Every other path
    (a `ModelCheckpoint`'s) goes to the IO it wraps.
    """

    def __init__(self, wrapped: CheckpointIO) -> None:
        self.wrapped = wrapped
        self.staged: tuple[str, dict[str, Any]] | None = None
        self._route: tuple[str, Callable[[dict[str, Any]], None]] | None = None

    def stage(self, path: str, checkpoint: dict[str, Any]) -> None:
        """Hand `checkpoint` to Lightning when it loads `path`."""
        self.staged = (path, checkpoint)

    @contextlib.contextmanager
    def routing(self, path: str, write: Callable[[dict[str, Any]], None]) -> Iterator[None]:
        """Within, a save to `path` goes to `write`; it must happen."""
        self._route = (path, write)
        try:
            yield
            if self._route is not None:
                raise IntermissionError(
                    f"Lightning's strategy did not save {path!r} through its checkpoint IO; strategies "
                    "that write checkpoints themselves (DeepSpeed, sharded FSDP) cannot pause a trial."
                )
        finally:
            self._route = None

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        """Write the routed checkpoint to the trial's store, any other through the wrapped IO."""
        if self._route is not None and str(path) == self._route[0]:
            write, self._route = self._route[1], None
            write(checkpoint)
        else:
            self.wrapped.save_checkpoint(checkpoint, path, storage_options=storage_options)

    def load_checkpoint(
        self, path: Any, map_location: Any | None = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        """The staged checkpoint, already verified; any other through the wrapped IO."""
        if self.staged is not None and str(path) == self.staged[0]:
            checkpoint, self.staged = self.staged[1], None
            return checkpoint
        where = {} if map_location is None else {"map_location": map_location}
        return self.wrapped.load_checkpoint(path, weights_only=weights_only, **where)

    def remove_checkpoint(self, path: Any) -> None:
        """Remove a checkpoint of the wrapped IO's (the trial's own are pruned by its manifest)."""
        self.wrapped.remove_checkpoint(path)

    def teardown(self) -> None:
        """Tear down the wrapped IO."""
        self.wrapped.teardown()
