"""Checkpoint bytes written and read together with their checksum, in one pass.

The manifest lists each checkpoint's XXH3-128 (older manifests: SHA-256). XXH3 hashes
at memory speed (about 20 GB/s against SHA-256's 1.7 on one core), and both release
the GIL, so each large chunk is hashed in a helper thread while it is written: a
checkpoint costs one pass over its bytes, not two. A checkpoint being loaded is hashed
in a helper thread while it is loaded from the same open file, and checked before the
load is returned.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Any, Protocol

import xxhash

from prefect_intermission._faults import fault_point

#: Chunks smaller than this are hashed inline: a thread hand-off would cost more.
_PARALLEL_CHUNK_BYTES = 1 << 20
_READ_CHUNK_BYTES = 1 << 20
_hasher = ThreadPoolExecutor(max_workers=4, thread_name_prefix="intermission-hash")

_crc_lock = threading.Lock()
_crc_users = 0
_crc_before = True


class Hasher(Protocol):
    """A running checksum, as `hashlib` and `xxhash` objects are."""

    def update(self, data: Any, /) -> None: ...

    def hexdigest(self) -> str: ...


@dataclass(frozen=True)
class Digest:
    """A checksum a manifest entry can list.

    Attributes:
        key: The entry's field that holds it, e.g. `"xxh3_128"`.
        name: Its name in messages, e.g. `"XXH3-128"`.
        new: Starts one.
    """

    key: str
    name: str
    new: Callable[[], Hasher]


#: What checkpoints are listed with: non-cryptographic, finds any damage at memory speed.
XXH3_128 = Digest("xxh3_128", "XXH3-128", xxhash.xxh3_128)
#: What checkpoints were listed with before XXH3-128 (manifest format version 1).
SHA256 = Digest("sha256", "SHA-256", hashlib.sha256)


def hexdigest(digest: Digest, data: bytes | bytearray) -> str:
    """The `digest` of `data` in memory."""
    hasher = digest.new()
    hasher.update(data)
    return hasher.hexdigest()


@contextmanager
def without_zip_crc32() -> Iterator[None]:
    """Let `torch.save` skip the zip CRC-32 of each record while the block runs.

    The manifest's checksum already covers every byte, and the CRC-32 doubles the cost of
    serializing. `torch.load` reads such files as usual. The setting is process-wide, so
    concurrent saves share it: the last one to finish restores what was there before.
    torch 2.6 has no such setting (`torch.utils.serialization.config` came with 2.7): there
    `torch.save` computes the CRC-32 as always, and only the save is slower.
    """
    global _crc_users, _crc_before
    try:
        from torch.utils.serialization import (
            config as torch_serialization_config,  # only when saving
        )
    except ImportError:  # torch < 2.7
        yield
        return

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

    def __init__(self, file: IO[bytes], digest: Digest) -> None:
        self._file = file
        self._hasher = digest.new()
        self.size = 0

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        if view.nbytes >= _PARALLEL_CHUNK_BYTES:
            hashed = _hasher.submit(self._hasher.update, view)
            try:
                self._file.write(view)
            finally:
                hashed.result()
        else:
            self._file.write(view)
            self._hasher.update(view)
        if self.size == 0:
            fault_point("checkpoint.write")
        self.size += view.nbytes
        return view.nbytes

    def flush(self) -> None:
        self._file.flush()

    def hexdigest(self) -> str:
        """The checksum of everything written so far."""
        return self._hasher.hexdigest()


def write_hashed(path: str, write: Callable[[HashingWriter], None], digest: Digest) -> tuple[int, str]:
    """Create `path`, let `write` fill it, `fsync` it; its size and checksum."""
    with open(path, "wb") as file:
        writer = HashingWriter(file, digest)
        write(writer)
        file.flush()
        os.fsync(file.fileno())
    return writer.size, writer.hexdigest()


def hash_file_alongside(file: IO[bytes], digest: Digest) -> Future[tuple[int, str]]:
    """Start hashing all of `file` in a helper thread; the future of its size and checksum.

    The helper reads with `pread` through one small buffer, so the file's own position is
    left to whoever reads it meanwhile: a load and its check take one pass of wall time.
    """

    def hashed() -> tuple[int, str]:
        hasher = digest.new()
        size = 0
        chunk = bytearray(_READ_CHUNK_BYTES)
        with memoryview(chunk) as view:
            while count := os.preadv(file.fileno(), [chunk], size):
                hasher.update(view[:count])
                size += count
        return size, hasher.hexdigest()

    return _hasher.submit(hashed)


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
