"""Where a study's checkpoints live: a local folder or any fsspec URL, checked before any work."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import quote

import fsspec
from fsspec.implementations.local import LocalFileSystem

from prefect_intermission.errors import ConfigurationError
from prefect_intermission.training.checkpoints import TrialCheckpoints
from prefect_intermission.training.retention import checked_keep_last


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
        keep_last: How many of its last checkpoints to keep per trial, besides its best
            epoch's; older ones are deleted after a newer one is written.
        storage_options: Options for the fsspec filesystem, e.g. s3fs's `key`,
            `secret` and `endpoint_url` (see `CheckpointStorageCredentials`). Without
            them s3fs reads the usual AWS environment variables.
    """

    def __init__(
        self, url: str, *, keep_last: int = 2, storage_options: dict[str, Any] | None = None
    ) -> None:
        keep_last = checked_keep_last(keep_last)
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

    def check_writable(self) -> None:
        """Fail with a clear error now, rather than after the first epoch, if we cannot write here."""
        probe = f"{self.root}/.intermission-write-check-{uuid.uuid4().hex}"
        try:
            self.fs.makedirs(self.root, exist_ok=True)
            self.fs.pipe_file(probe, b"ok")
            self.fs.rm_file(probe)
        except (OSError, ValueError) as e:
            raise ConfigurationError(
                f"Cannot write to the checkpoint location {self.url!r}: {e}. Create it, fix its "
                "permissions, or choose another location with the `checkpoints` parameter."
            ) from e

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
        return TrialCheckpoints(self.fs, folder, self.keep_last)

    def study_folder(self, study_name: str) -> str:
        """The folder (or prefix) that holds every checkpoint of a study, as a URL."""
        path = f"{self.root}/{safe_path_component(study_name)}"
        return path if isinstance(self.fs, LocalFileSystem) else self.fs.unstrip_protocol(path)
