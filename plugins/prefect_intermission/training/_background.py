"""A checkpoint written off the training thread: a consistent copy now, the bytes later.

At a boundary the training thread only takes `snapshot(state)` (every tensor copied into
CPU memory, everything else copied too, so training may change the originals at once) and
hands it to a `PendingWrite`: a thread of its own that serializes, hashes, writes, fsyncs,
lists the checkpoint in the manifest and rotates old ones. `PendingWrite.wait` joins it
and raises, on the waiting thread, whatever the write raised.
"""

from __future__ import annotations

import copy
import threading
from collections import OrderedDict
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import torch


def snapshot(state: Any) -> Any:
    """A copy of `state` that nothing the training does afterwards can change.

    Dicts, lists and tuples are rebuilt; each tensor's storage is copied once into CPU
    memory (from a GPU with `.cpu()`), and tensors that shared a storage share its copy,
    as `torch.save` would have stored them; anything else is deep-copied.
    """
    storages: dict[tuple[str, int], torch.UntypedStorage] = {}
    memo: dict[int, Any] = {}

    def copied(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            return _tensor_copy(value, storages)
        kind = type(value)
        if kind is dict or kind is OrderedDict:
            return kind((key, copied(item)) for key, item in value.items())
        if kind is list:
            return [copied(item) for item in value]
        if kind is tuple:
            return tuple(copied(item) for item in value)
        if kind in (int, float, str, bool, bytes, type(None)):
            return value
        return copy.deepcopy(value, memo)

    return copied(state)


def _tensor_copy(tensor: torch.Tensor, storages: dict[tuple[str, int], torch.UntypedStorage]) -> torch.Tensor:
    """`tensor` on the CPU, over a copy of its storage made once per storage."""
    tensor = tensor.detach()
    if tensor.layout != torch.strided or tensor.is_quantized or tensor.is_nested or tensor.device.type == "meta":
        return tensor.to("cpu", copy=True)  # rare kinds: copied alone
    source = tensor.untyped_storage()
    key = (str(source.device), source.data_ptr())
    storage = storages.get(key) if source.data_ptr() else None
    if storage is None:
        storage = source.clone() if source.device.type == "cpu" else source.cpu()
        if source.data_ptr():
            storages[key] = storage
    return torch.empty(0, dtype=tensor.dtype).set_(
        storage, tensor.storage_offset(), tensor.size(), tensor.stride()
    )


class PendingWrite:
    """One write running in a thread of its own.

    Args:
        write: What to do (it gets a copy of the state, never the live one).
        name: The thread's name, as debuggers and `py-spy` show it.
        held: A context manager entered now, on the calling thread, and left in the
            writer's thread once `write` has finished: a study stopped at once waits for it.
    """

    def __init__(self, write: Callable[[], object], *, name: str, held: AbstractContextManager[Any] | None = None) -> None:
        self._error: BaseException | None = None
        if held is not None:
            held.__enter__()
        self._held = held
        self._write = write
        # Not a daemon: an interpreter that exits normally still finishes the write.
        self._thread = threading.Thread(target=self._run, name=name)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._write()
        except BaseException as e:  # raised again on the thread that waits
            self._error = e
        finally:
            self._write = None  # type: ignore[assignment]  # the copy is freed once written
            if self._held is not None:
                self._held.__exit__(None, None, None)

    def done(self) -> bool:
        """Whether the write has finished (or failed)."""
        return not self._thread.is_alive()

    def wait(self) -> None:
        """Block until the write has finished; raise here whatever it raised."""
        self._thread.join()
        if self._error is not None:
            error, self._error = self._error, None
            raise error
