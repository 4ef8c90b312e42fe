"""A checkpoint written off the training thread: a consistent copy now, the bytes later.

At a boundary the training thread only takes a copy of the state (`Snapshots`: every
tensor copied into CPU memory, everything else copied too, so training may change the
originals at once) and
hands it to a `PendingWrite`: a thread of its own that serializes, hashes, writes, fsyncs,
lists the checkpoint in the manifest and rotates old ones. `PendingWrite.wait` joins it
and raises, on the waiting thread, whatever the write raised.
"""

from __future__ import annotations

import copy
import ctypes
import threading
from collections import OrderedDict
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import torch


class Snapshots:
    """Consistent CPU copies of a trial's state, taken into buffers kept from one copy to the next.

    Dicts, lists and tuples are rebuilt; each tensor storage is copied once into CPU memory
    (from a GPU through pinned memory), and tensors that shared a storage share its copy,
    as `torch.save` would have stored them; anything else is deep-copied. A storage of the
    same place and size as one copied last time is copied into that copy's buffer: its
    memory is already mapped, so the copy runs at memory speed instead of paying a page
    fault per page of fresh memory (about five times slower here). A copy's buffers are
    therefore reused by the next `take`: take it only once the previous copy was written.
    """

    def __init__(self) -> None:
        self._buffers: dict[tuple[str, int, int], torch.UntypedStorage] = {}

    def take(self, state: Any) -> Any:
        """A copy of `state` that nothing the training does afterwards can change."""
        kept, self._buffers = self._buffers, {}
        memo: dict[int, Any] = {}
        devices: set[torch.device] = set()

        def copied(value: Any) -> Any:
            if isinstance(value, torch.Tensor):
                return self._tensor(value, kept, devices)
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

        result = copied(state)
        for device in devices:  # the copies from a GPU were asynchronous
            torch.cuda.synchronize(device)
        return result

    def _tensor(
        self, tensor: torch.Tensor, kept: dict[tuple[str, int, int], torch.UntypedStorage], devices: set[torch.device]
    ) -> torch.Tensor:
        """`tensor` on the CPU, over a copy of its storage made once per storage."""
        tensor = tensor.detach()
        if tensor.layout != torch.strided or tensor.is_quantized or tensor.is_nested or tensor.device.type == "meta":
            return tensor.to("cpu", copy=True)  # rare kinds: copied alone
        source = tensor.untyped_storage()
        key = (str(source.device), source.data_ptr(), source.nbytes())
        buffer = self._buffers.get(key) if key[1] else None
        if buffer is None:
            buffer = kept.pop(key, None) if key[1] else None
            on_gpu = source.device.type == "cuda"
            if buffer is None:
                buffer = torch.empty(source.nbytes(), dtype=torch.uint8, pin_memory=on_gpu).untyped_storage()
            if on_gpu:
                buffer.copy_(source, non_blocking=True)
                devices.add(source.device)
            elif source.device.type == "cpu":
                # One plain memcpy, without the GIL: torch's own copy splits it over its
                # intra-op threads, which on busy cores made it ten times slower here.
                ctypes.memmove(buffer.data_ptr(), source.data_ptr(), source.nbytes())
            else:
                buffer.copy_(source)
            if key[1]:
                self._buffers[key] = buffer
        return torch.empty(0, dtype=tensor.dtype).set_(buffer, tensor.storage_offset(), tensor.size(), tensor.stride())


def snapshot(state: Any) -> Any:
    """A copy of `state` into fresh buffers (see `Snapshots`)."""
    return Snapshots().take(state)


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

    def wait(self) -> None:
        """Block until the write has finished; raise here whatever it raised."""
        self._thread.join()
        if self._error is not None:
            error, self._error = self._error, None
            raise error
