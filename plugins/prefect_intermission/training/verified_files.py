"""A checkpoint file written all or nothing and read back only if it matches its manifest entry.

A local file is written beside its final name and renamed; an object store gets a single
PUT. Reading checks the size and checksum the manifest lists (XXH3-128, or SHA-256 for an
entry carried over from a version-1 manifest) and loads with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import io
import os
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fsspec.implementations.local import LocalFileSystem

from prefect_intermission.errors import CheckpointError
from prefect_intermission.training._hashed_io import (
    SHA256,
    XXH3_128,
    Digest,
    HashingWriter,
    MemoryReader,
    hash_file_alongside,
    hexdigest,
    write_hashed,
)

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

#: The checksum new entries list, and every one an entry may list.
WRITTEN_DIGEST = XXH3_128
_DIGESTS = (XXH3_128, SHA256)


def write_complete(
    fs: AbstractFileSystem, folder: str, path: str, write: Callable[[HashingWriter], object]
) -> tuple[int, str]:
    """Store what `write` writes under `path` (in `folder`), all or nothing; its size and checksum."""
    if isinstance(fs, LocalFileSystem):
        os.makedirs(folder, exist_ok=True)
        partial = f"{folder}/.{os.path.basename(path)}.{uuid.uuid4().hex}.partial"
        try:
            written = write_hashed(partial, write, WRITTEN_DIGEST)
            os.replace(partial, path)
        finally:
            if os.path.exists(partial):
                os.remove(partial)
        return written
    buffer = io.BytesIO()
    writer = HashingWriter(buffer, WRITTEN_DIGEST)
    write(writer)
    fs.pipe_file(path, buffer.getvalue())
    return writer.size, writer.hexdigest()


def read_verified(fs: AbstractFileSystem, path: str, entry: dict[str, Any]) -> Any:
    """Check the file at `path` against its manifest `entry`, then load it (weights only).

    A local file is loaded (`weights_only`) while a helper thread hashes the same open
    file (the same inode, even if the name were replaced in between), and nothing loaded
    is returned before the check: no copy of the whole file in memory, each tensor gets
    a storage of its own, and a damaged file is said to be damaged even when its load
    fails. From an object store the bytes are fetched once and loaded from memory.

    Raises:
        CheckpointError: The file is missing, has no known checksum in `entry`, does not
            match it, or cannot be loaded safely.
    """
    digest = next((d for d in _DIGESTS if d.key in entry), None)
    if digest is None:
        known = " or ".join(d.key for d in _DIGESTS)
        raise CheckpointError(f"{path!r} has no checksum this release knows ({known}) in the manifest")
    try:
        if isinstance(fs, LocalFileSystem):
            with open(path, "rb") as file:
                hashing = hash_file_alongside(file, digest)
                try:
                    state = _load(path, file)
                finally:
                    size, checksum = hashing.result()
                    _check(path, entry, digest, size, checksum)
                return state
        data = fs.cat_file(path)
    except FileNotFoundError as e:
        raise CheckpointError(f"{path!r} is missing") from e
    _check(path, entry, digest, len(data), hexdigest(digest, data))
    with MemoryReader(data) as verified:
        return _load(path, verified)


def _check(path: str, entry: dict[str, Any], digest: Digest, size: int, checksum: str) -> None:
    if size != entry["size"]:
        raise CheckpointError(f"{path!r} has {size} bytes, the manifest says {entry['size']}")
    if checksum != entry[digest.key]:
        raise CheckpointError(f"{path!r} does not match its {digest.name} in the manifest")


def _load(path: str, file: Any) -> Any:
    import torch  # here, not at the top: `intermission status` lists checkpoints without it

    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{path!r} cannot be read safely: {_load_problem(e)}") from e


def _load_problem(error: Exception) -> str:
    """The part of a refused `torch.load` that says what the file asked for."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    wanted = [line for line in lines if "unsupported GLOBAL" in line]
    return (wanted or lines or [type(error).__name__])[0]
