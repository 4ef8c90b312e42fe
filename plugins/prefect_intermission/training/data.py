"""A data loader whose place in the epoch is part of the trial's checkpoint.

    loader = loop.data_loader(train_set, batch_size=32, shuffle=True, num_workers=2)

A trial paused within an epoch continues with the next batch, in the same order, as if
it had never stopped. The mechanism is the one torchdata's `StatefulDataLoader` uses
for map-style datasets, written here in a few lines so that it depends on no private
part of `torch.utils.data`: the shuffling generator's state at the start of the epoch
plus the number of batches yielded is the whole position. On resume the generator is
set back, the same permutation is drawn, and the batches already trained are skipped
by index: no sample is loaded twice. Data-loading workers are seeded from the same
generator, so their seeds repeat too (random augmentation in a worker should draw from
`torch.utils.data.get_worker_info().seed` and the sample index, to be exact).
"""

from __future__ import annotations

from collections.abc import Iterator, Sized
from typing import Any

import torch
from torch.utils.data import DataLoader, Sampler


class _SkippingSampler(Sampler[int]):
    """Shuffled (or sequential) indices of one epoch, the first `skip` of them left out."""

    def __init__(self, size: int, *, shuffle: bool, generator: torch.Generator) -> None:
        self.size, self.shuffle, self.generator = size, shuffle, generator
        self.skip = 0

    def __iter__(self) -> Iterator[int]:
        order = torch.randperm(self.size, generator=self.generator) if self.shuffle else torch.arange(self.size)
        skip, self.skip = self.skip, 0
        return iter(order[skip:].tolist())

    def __len__(self) -> int:
        return self.size


class ResumableDataLoader(DataLoader):
    """A `DataLoader` over a map-style dataset that can stop within an epoch and continue exactly.

    Made by `TrialLoop.data_loader`, which checkpoints its `state_dict` with the trial.
    Takes `DataLoader`'s arguments except `sampler`, `batch_sampler` and `generator`.
    """

    def __init__(
        self, dataset: Any, *, batch_size: int = 1, shuffle: bool = False, generator: torch.Generator, **kwargs: Any
    ) -> None:
        for taken in ("sampler", "batch_sampler"):
            if kwargs.get(taken) is not None:
                raise TypeError(f"loop.data_loader() chooses the {taken} itself (it must skip by index); omit {taken}.")
        if not isinstance(dataset, Sized):
            raise TypeError(
                "loop.data_loader() needs a map-style dataset (with __len__); for an iterable "
                "dataset, give it state_dict()/load_state_dict() and pass it to loop.track_data()."
            )
        sampler = _SkippingSampler(len(dataset), shuffle=shuffle, generator=generator)
        super().__init__(dataset, batch_size=batch_size, sampler=sampler, generator=generator, **kwargs)
        self._epoch_start: torch.Tensor | None = None
        self._batches_done = 0
        self._resume: dict[str, Any] | None = None

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        self._batches_done = 0
        if self._resume is not None:
            self.generator.set_state(self._resume["generator"])
            self._batches_done = self._resume["batches_done"]
            self.sampler.skip = self._batches_done * (self.batch_size or 1)  # type: ignore[attr-defined]
            self._resume = None
        self._epoch_start = self.generator.get_state()
        for batch in super().__iter__():
            self._batches_done += 1
            yield batch

    def state_dict(self) -> dict[str, Any]:
        """Where the loader is: the epoch's starting generator state and the batches yielded."""
        start = self._epoch_start if self._epoch_start is not None else self.generator.get_state()
        return {"generator": start, "batches_done": self._batches_done}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from `state` at the next iteration (the rest of that epoch)."""
        self._resume = {"generator": state["generator"], "batches_done": int(state["batches_done"])}
