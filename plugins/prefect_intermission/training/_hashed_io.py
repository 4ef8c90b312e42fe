"""Local checkpoint files written and read together with their SHA-256, in one pass.

Hashing 200 MB costs about as much as writing it to the page cache, and both release
the GIL, so each large chunk is hashed in a helper thread while it is written (or the
next one is read): a checkpoint costs about one pass over its bytes, not two.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import IO, Any

from torch.utils.serialization import config as torch_serialization_config

from prefect_intermission._faults import fault_point

#: Chunks smaller than this are hashed inline: a thread hand-off would cost more.
_PARALLEL_CHUNK_BYTES = 1 << 20
_READ_CHUNK_BYTES = 8 << 20
_hasher = ThreadPoolExecutor(max_workers=4, thread_name_prefix="intermission-sha256")

_crc_lock = threading.Lock()
_crc_users = 0
_crc_before = True


@contextmanager
def without_zip_crc32() -> Iterator[None]:
    """Let `torch.save` skip the zip CRC-32 of each record while the block runs.

    The manifest's SHA-256 already covers every byte, and the CRC-32 doubles the cost of
    serializing. `torch.load` reads such files as usual. The setting is process-wide, so
    concurrent saves share it: the last one to finish restores what was there before.
    """
    global _crc_users, _crc_before
    with _crc_lock:
        if _crc_users == 0:
            _crc_before = torch_serialization_config.save.compute_crc32
            torch_serialization_config.save.compute_crc32 = False
        _crc_users += 1
    try:
        yield
    finally:
        with _crc_lock:
            _crc_users -= 1
            if _crc_users == 0:
                torch_serialization_config.save.compute_crc32 = _crc_before


class HashingWriter:
    """A write-only file object for `torch.save`: writes to `file` and hashes what it writes.

    Large chunks are hashed in a helper thread while they are written; `write` returns
    only when both are done, so `torch.save` may reuse its buffers at once.
    """

    def __init__(self, file: IO[bytes]) -> None:
        self._file = file
        self._sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        if view.nbytes >= _PARALLEL_CHUNK_BYTES:
            hashed = _hasher.submit(self._sha256.update, view)
            try:
                self._file.write(view)
            finally:
                hashed.result()
        else:
            self._file.write(view)
            self._sha256.update(view)
        if self.size == 0:
            fault_point("checkpoint.write")
        self.size += view.nbytes
        return view.nbytes

    def flush(self) -> None:
        self._file.flush()

    def hexdigest(self) -> str:
        """The SHA-256 of everything written so far."""
        return self._sha256.hexdigest()


def write_hashed(path: str, write: Callable[[HashingWriter], None]) -> tuple[int, str]:
    """Create `path`, let `write` fill it, `fsync` it; its size and SHA-256."""
    with open(path, "wb") as file:
        writer = HashingWriter(file)
        write(writer)
        file.flush()
        os.fsync(file.fileno())
    return writer.size, writer.hexdigest()


def read_hashed(path: str) -> tuple[bytearray, str]:
    """The bytes of the file at `path` and their SHA-256, each chunk hashed while the
    next one is read."""
    sha256 = hashlib.sha256()
    with open(path, "rb", buffering=0) as file:
        data = bytearray(os.fstat(file.fileno()).st_size)
        filled, pending = 0, None
        with memoryview(data) as view:
            while filled < len(data):
                count = file.readinto(view[filled : filled + _READ_CHUNK_BYTES])
                if pending is not None:
                    pending.result()
                if not count:
                    break  # shorter than it was a moment ago
                pending = _hasher.submit(sha256.update, view[filled : filled + count])
                filled += count
            if pending is not None:
                pending.result()
        del data[filled:]
        if rest := file.read():  # longer than it was a moment ago
            sha256.update(rest)
            data += rest
    return data, sha256.hexdigest()


class MemoryReader(io.RawIOBase):
    """A seekable read-only file over bytes in memory, without the copy `io.BytesIO` makes
    of anything but `bytes`: `torch.load` reads the verified bytes straight from it."""

    def __init__(self, data: bytes | bytearray) -> None:
        super().__init__()
        self._view = memoryview(data).cast("B")
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: len(self._view)}[whence]
        self._position = max(0, base + offset)
        return self._position

    def readinto(self, buffer: Any) -> int:
        target = memoryview(buffer).cast("B")
        chunk = self._view[self._position : self._position + target.nbytes]
        target[: chunk.nbytes] = chunk
        self._position += chunk.nbytes
        return chunk.nbytes

    def close(self) -> None:
        self._view.release()
        super().close()
