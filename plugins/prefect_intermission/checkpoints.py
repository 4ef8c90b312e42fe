"""Trial checkpoints stored through fsspec.

Layout under the checkpoint root (any fsspec URL; a local folder by default):

    <root>/<study>/trial-00003/epoch-00007.pt

A checkpoint is never visible under its final name before it is complete: a local
file is written beside it and renamed, an object store gets a single upload.
"""

from __future__ import annotations

import io
import os
import re
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import fsspec
import torch
from fsspec.implementations.local import LocalFileSystem

from prefect_intermission.errors import CheckpointError, ConfigurationError

CHECKPOINT_FORMAT_VERSION = 1
_EPOCH_FILE = re.compile(r"^epoch-(\d{5,})\.pt$")


def safe_path_component(name: str) -> str:
    """Turn a study name into one path component that cannot leave its parent folder."""
    if not name:
        raise ConfigurationError("A study name must not be empty.")
    component = quote(name, safe="-_.")
    if component in {".", ".."}:
        raise ConfigurationError(
            f"{name!r} cannot be used as a study name; choose a name with letters or digits."
        )
    return component


class CheckpointStore:
    """Where a study's trial checkpoints live.

    Args:
        url: Any fsspec URL or local path, e.g. `.intermission/checkpoints` or
            `s3://bucket/prefix`.
        keep_last: How many checkpoints to keep per trial; older ones are deleted
            after a newer one is written.
        storage_options: Options for the fsspec filesystem, e.g. s3fs's `key`,
            `secret` and `endpoint_url` (see `CheckpointStorageCredentials`). Without
            them s3fs reads the usual AWS environment variables.
    """

    def __init__(
        self, url: str, *, keep_last: int = 2, storage_options: dict[str, Any] | None = None
    ) -> None:
        if keep_last < 1:
            raise ConfigurationError(f"keep_last must be >= 1, but got {keep_last=}.")
        try:
            self.fs, self.root = fsspec.url_to_fs(url, **(storage_options or {}))
        except (ImportError, ValueError) as e:
            raise ConfigurationError(
                f"Cannot open the checkpoint location {url!r}: {e}. Use a local folder or an "
                "fsspec URL whose filesystem package is installed (e.g. s3fs for s3://)."
            ) from e
        self.url = url
        self.keep_last = keep_last
        self.root = self.root.rstrip("/")

    def verify(self) -> None:
        """Check, before any training, that an object store's bucket exists and can be reached.

        Raises:
            ConfigurationError: The bucket does not exist, or the store refuses or
                cannot be reached with the credentials given.
        """
        if isinstance(self.fs, LocalFileSystem) or self.fs.root_marker:
            return  # a local folder is created on the first write
        bucket = self.root.split("/", 1)[0]
        try:
            self.fs.info(bucket)
        except FileNotFoundError as e:
            raise ConfigurationError(
                f"The bucket {bucket!r} of the checkpoint location {self.url!r} does not exist "
                "(or these credentials cannot see it). Create the bucket, or fix the "
                "checkpoints URL or the credentials."
            ) from e
        except PermissionError as e:
            raise ConfigurationError(
                f"Access to the bucket {bucket!r} of the checkpoint location {self.url!r} was "
                f"refused: {e}. Check the credentials (the checkpoint_credentials block or the "
                "worker's AWS environment) and the bucket's policy."
            ) from e
        except Exception as e:
            raise ConfigurationError(
                f"Cannot reach the checkpoint location {self.url!r}: {type(e).__name__}: {e}. "
                "Check the endpoint (endpoint_url or AWS_ENDPOINT_URL), the network and the credentials."
            ) from e

    def for_trial(self, study_name: str, trial_number: int) -> TrialCheckpoints:
        """The checkpoints of one trial of one study."""
        folder = f"{self.root}/{safe_path_component(study_name)}/trial-{trial_number:05d}"
        return TrialCheckpoints(self, folder)

    def study_folder(self, study_name: str) -> str:
        """The folder (or prefix) that holds every checkpoint of a study, as a URL."""
        path = f"{self.root}/{safe_path_component(study_name)}"
        return path if isinstance(self.fs, LocalFileSystem) else self.fs.unstrip_protocol(path)


@dataclass(frozen=True)
class TrialCheckpoints:
    """The epoch checkpoints of one trial."""

    store: CheckpointStore
    folder: str

    def path(self, epoch: int) -> str:
        """Where the checkpoint written after `epoch` lives."""
        return f"{self.folder}/epoch-{epoch:05d}.pt"

    def epochs(self) -> list[int]:
        """Epochs that have a checkpoint, oldest first."""
        fs = self.store.fs
        try:
            names = [os.path.basename(p.rstrip("/")) for p in fs.ls(self.folder, detail=False)]
        except FileNotFoundError:
            return []
        return sorted(int(m.group(1)) for n in names if (m := _EPOCH_FILE.match(n)))

    def save(self, epoch: int, state: dict[str, Any]) -> str:
        """Store the checkpoint of `epoch` and prune older ones; return its path."""
        checkpoint = {"format_version": CHECKPOINT_FORMAT_VERSION, **state}
        path = self.path(epoch)
        try:
            self._write_complete(path, checkpoint)
        except (OSError, RuntimeError) as e:
            raise CheckpointError(
                f"Could not write checkpoint {path!r}: {e}. Check that the checkpoint "
                "location exists, is writable and has free space."
            ) from e
        self._prune()
        return path

    def load_latest(self) -> dict[str, Any] | None:
        """The newest checkpoint of this trial, or None if it has none."""
        epochs = self.epochs()
        return self.load(epochs[-1]) if epochs else None

    def load(self, epoch: int) -> dict[str, Any]:
        """Load the checkpoint of `epoch` (tensors only: never runs code from the file)."""
        path = self.path(epoch)
        fs = self.store.fs
        try:
            if isinstance(fs, LocalFileSystem):
                with open(path, "rb") as f:  # straight from the file: no copy of its bytes
                    state = torch.load(f, map_location="cpu", weights_only=True)
            else:  # one GET, rather than many small ranged reads
                state = torch.load(io.BytesIO(fs.cat_file(path)), map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise
        except Exception as e:
            raise CheckpointError(f"Checkpoint {path!r} cannot be read safely: {e}") from e
        version = state.get("format_version")
        if version != CHECKPOINT_FORMAT_VERSION:
            raise CheckpointError(
                f"Checkpoint {path!r} has format version {version!r}, but this version of "
                f"prefect-intermission reads version {CHECKPOINT_FORMAT_VERSION}. Resume it "
                "with the release that wrote it, or delete the trial's checkpoints to restart it."
            )
        return state

    def _write_complete(self, path: str, checkpoint: dict[str, Any]) -> None:
        fs = self.store.fs
        if isinstance(fs, LocalFileSystem):
            os.makedirs(self.folder, exist_ok=True)
            partial = f"{self.folder}/.{os.path.basename(path)}.{uuid.uuid4().hex}.partial"
            try:
                with open(partial, "wb") as f:  # serialized straight into the file
                    torch.save(checkpoint, f)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(partial, path)
            finally:
                if os.path.exists(partial):
                    os.remove(partial)
        else:
            buffer = io.BytesIO()
            torch.save(checkpoint, buffer)
            # One upload (a PUT, or a multipart upload for large ones): the object
            # appears only once it is complete.
            fs.pipe_file(path, buffer.getvalue())

    def _prune(self) -> None:
        for epoch in self.epochs()[: -self.store.keep_last]:
            self.store.fs.rm_file(self.path(epoch))
