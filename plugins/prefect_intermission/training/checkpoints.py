"""Which checkpoints of a trial exist and are kept: its manifest, written and read verified.

Where they live is `store.py`; how a file is written complete and read verified is
`verified_files.py`; which ones are kept is `retention.py`; what a checkpoint holds is the
training loop's.

Layout under the checkpoint root (any fsspec URL; a local folder by default):

    <root>/<study>/trial-00003/epoch-00007.pt

    <root>/<study>/trial-00003/manifest.json   (size and XXH3-128 of each checkpoint)

A checkpoint is never visible under its final name before it is complete: a local
file is written beside it and renamed, an object store gets a single PUT. It is
listed in the manifest only once written, and verified against it before it is
loaded; older checkpoints are deleted only after a newer one is listed. Besides the
last `keep_last`, the checkpoint of the trial's best epoch so far is kept, marked
`"best"` in the manifest.

`save` writes on the calling thread; `save_in_background` takes a copy of the state and
writes it in a thread of its own (`_background.py`). At most one write is pending per
trial: the next save, `wait()` and every read of the trial's checkpoints wait for it
first, and raise what it raised.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any


from prefect_intermission._faults import fault_point
from prefect_intermission.errors import CheckpointError
from prefect_intermission.training._hashed_io import without_zip_crc32
from prefect_intermission.training.retention import retained
from prefect_intermission.training.verified_files import WRITTEN_DIGEST, read_verified, write_complete

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

    from prefect_intermission.training._background import PendingWrite, Snapshots

logger = logging.getLogger(__name__)

#: What a checkpoint file holds (its own `format_version`).
CHECKPOINT_FORMAT_VERSION = 1
#: What the manifest says: version 1 lists each checkpoint's SHA-256; version 2 its
#: XXH3-128 (an entry carried over from a version-1 manifest keeps its SHA-256) and
#: marks the best epoch's checkpoint `"best"`.
MANIFEST_FORMAT_VERSION = 2
_READABLE_MANIFESTS = (1, 2)
_EPOCH_FILE = re.compile(r"^epoch-(\d{5,})(-mid)?\.pt$")
_MANIFEST = "manifest.json"


@dataclass
class LoadResult:
    """What loading a trial's latest valid checkpoint found.

    Attributes:
        state: The checkpoint, or None when no valid one exists.
        epoch: Its epoch, or None.
        fallbacks: Each newer checkpoint skipped, as `{"epoch": e, "problem": "..."}`.
        best: Whether it is the checkpoint marked as the best epoch's.
    """

    state: dict[str, Any] | None
    epoch: int | None
    fallbacks: list[dict[str, Any]]
    best: bool = False


@dataclass
class TrialCheckpoints:
    """The epoch checkpoints of one trial, listed with their size and checksum in a manifest.

    A trial has one writer at a time (the study's lease, or a trial run's claim on its
    trial, sees to it), so after its first save the manifest is kept in memory: an epoch
    costs one checkpoint write and one manifest write, with no reads or listings.
    """

    fs: AbstractFileSystem  # where the store lives (`CheckpointStore.fs`)
    folder: str
    keep_last: int  # the store's retention: its last checkpoints kept besides the best
    _listed: list[dict[str, Any]] | None = field(default=None, init=False, repr=False, compare=False)
    _pending: PendingWrite | None = field(default=None, init=False, repr=False, compare=False)
    _snapshots: Snapshots | None = field(default=None, init=False, repr=False, compare=False)  # at the first write

    @property
    def manifest_path(self) -> str:
        """Where the manifest of this trial's checkpoints lives."""
        return f"{self.folder}/{_MANIFEST}"

    def path(self, epoch: int, *, mid_epoch: bool = False) -> str:
        """Where the checkpoint written after `epoch` lives (with `mid_epoch`: written within it)."""
        return f"{self.folder}/epoch-{epoch:05d}{'-mid' if mid_epoch else ''}.pt"

    def entries(self) -> list[dict[str, Any]]:
        """The manifest's checkpoints, oldest first (empty when there is no manifest).

        Raises:
            CheckpointError: The manifest exists but cannot be read.
        """
        self.wait()
        return self._entries()

    def _entries(self) -> list[dict[str, Any]]:
        manifest = self._manifest()
        return sorted(manifest["checkpoints"], key=lambda e: int(e["epoch"])) if manifest else []

    def check_format(self) -> None:
        """Fail if this trial's manifest was written in a format version this release cannot read.

        Raises:
            CheckpointError: It was; nothing is loaded or changed.
        """
        self.wait()
        try:
            manifest = self._manifest()
        except CheckpointError:
            return  # damaged: the fallback on load deals with it
        version = manifest.get("format_version") if manifest else MANIFEST_FORMAT_VERSION
        if version not in _READABLE_MANIFESTS:
            readable = " and ".join(str(v) for v in _READABLE_MANIFESTS)
            raise CheckpointError(
                f"The checkpoints in {self.folder!r} have format version {version!r}, but this "
                f"version of prefect-intermission reads versions {readable}. "
                "Nothing was changed. Continue the study with the release that wrote them, "
                "or run with restart_trials_without_checkpoints=True after deleting them."
            )

    def _manifest(self) -> dict[str, Any] | None:
        try:
            raw = self.fs.cat_file(self.manifest_path)
        except FileNotFoundError:
            return None
        try:
            manifest = json.loads(raw)
            [int(e["epoch"]) for e in manifest["checkpoints"]]
            return manifest
        except (ValueError, KeyError, TypeError) as e:
            raise CheckpointError(f"Manifest {self.manifest_path!r} is unreadable: {e}") from e

    def epochs(self) -> list[int]:
        """Finished epochs with a checkpoint in the manifest, oldest first."""
        return [int(e["epoch"]) for e in self.entries() if not e.get("mid_epoch")]

    def last_epoch(self) -> int | None:
        """The newest epoch with a checkpoint, the one a continuation starts after; None if none."""
        epochs = self.epochs()
        return epochs[-1] if epochs else None

    def best_path(self) -> str | None:
        """Where the checkpoint marked as the best epoch's lives, or None when none is marked."""
        self.wait()
        try:
            marked = [e for e in self._entries() if e.get("best")]
        except CheckpointError:
            return None
        return self.path(int(marked[-1]["epoch"])) if marked else None

    def exists(self) -> bool:
        """Whether this trial has a manifest or any checkpoint file at all."""
        self.wait()
        fs = self.fs
        try:
            return bool(fs.ls(self.folder, detail=False))
        except FileNotFoundError:
            return False

    def save(self, epoch: int, state: dict[str, Any], *, best: bool = False, mid_epoch: bool = False) -> str:
        """Store the checkpoint of `epoch`, list it in the manifest, prune older ones; its path.

        With `best`, it is marked as the best epoch's: kept besides the last `keep_last`
        until a later one is marked. With `mid_epoch`, it was taken within `epoch` (a
        step boundary): kept besides the epochs' checkpoints until the next one, and
        the first a continuation loads. A pending background write is waited for first.

        Raises:
            CheckpointError: It (or the pending write) could not be written.
        """
        self.wait()
        return self._write(epoch, state, best=best, mid_epoch=mid_epoch)

    def save_in_background(
        self,
        epoch: int,
        state: dict[str, Any],
        *,
        best: bool = False,
        mid_epoch: bool = False,
        held: AbstractContextManager[Any] | None = None,
    ) -> str:
        """As `save`, but only a copy of `state` is taken here; it is written in a thread of
        its own, and this returns the path it will have.

        The pending write is waited for (and what it raised is raised) by the next save,
        `wait()` or any read of this trial's checkpoints. `held` is entered now and left
        once the write has finished (the pause signal's `recording`).

        Raises:
            CheckpointError: The previous pending write failed.
        """
        self.wait()
        path = self.path(epoch, mid_epoch=mid_epoch)
        from prefect_intermission.training._background import (  # needs torch
            PendingWrite,
            Snapshots,
        )

        if self._snapshots is None:
            self._snapshots = Snapshots()
        copied = self._snapshots.take(state)  # into the buffers of the copy just written
        self._pending = PendingWrite(
            functools.partial(self._write, epoch, copied, best=best, mid_epoch=mid_epoch, in_background=True),
            name=f"intermission-writer-{os.path.basename(self.folder)}",
            held=held,
        )
        return path

    def release(self) -> None:
        """Let go of the buffers background copies are taken into (once no write is pending);
        the next `save_in_background` maps fresh ones."""
        self.wait()
        self._snapshots = None

    def wait(self) -> None:
        """Return once no checkpoint of this trial is being written in the background.

        Raises:
            CheckpointError: The pending write failed (or whatever else it raised); it is
                raised once, here, and its checkpoint is not listed.
        """
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.wait()

    def _write(
        self, epoch: int, state: dict[str, Any], *, best: bool, mid_epoch: bool, in_background: bool = False
    ) -> str:
        """Write, list and rotate: the work of `save`, on whichever thread runs it."""
        if in_background:
            fault_point("writer.before_write")
        import torch  # here, not at the top: `intermission status` lists checkpoints without it

        payload = {"format_version": CHECKPOINT_FORMAT_VERSION, **state}
        path = self.path(epoch, mid_epoch=mid_epoch)
        try:
            with without_zip_crc32():
                size, checksum = write_complete(self.fs, self.folder, path, lambda f: torch.save(payload, f))
        except OSError as e:
            raise CheckpointError(
                f"Could not write checkpoint {path!r}: {e}. Check that the checkpoint "
                "location exists, is writable and has free space."
            ) from e
        fault_point("checkpoint.manifest")
        if in_background:
            fault_point("writer.before_manifest")
        entry = {"epoch": epoch, "file": os.path.basename(path), "size": size, WRITTEN_DIGEST.key: checksum}
        if best:
            entry["best"] = True
        if mid_epoch:
            entry["mid_epoch"] = True
        first_save = self._listed is None
        if self._listed is None:
            try:
                self._listed = self._entries()
            except CheckpointError:
                self._listed = []  # a damaged manifest is replaced by one that lists what is verified
        kept = retained(self._listed, entry, keep_last=self.keep_last)
        dropped = [e for e in self._listed if e not in kept]
        manifest = json.dumps({"format_version": MANIFEST_FORMAT_VERSION, "checkpoints": kept})
        write_complete(self.fs, self.folder, self.manifest_path, lambda f: f.write(manifest.encode()))
        self._listed = kept
        if in_background:
            fault_point("writer.after_manifest")
        if first_save:  # also clears what earlier writers left: unlisted files, partial writes
            self._delete_unlisted({e["file"] for e in kept})
        else:
            self._delete_files({e["file"] for e in dropped} - {e["file"] for e in kept})
        return path

    def load_latest_valid(self) -> LoadResult:
        """The newest checkpoint that matches its manifest entry and loads safely.

        Newer checkpoints that are missing, truncated, altered or unreadable are
        skipped and reported in `fallbacks`; none of them is ever loaded.
        """
        fallbacks: list[dict[str, Any]] = []
        self.wait()  # a failed write is raised, never taken for a damaged manifest
        try:
            entries = self._entries()
        except CheckpointError as e:
            return LoadResult(None, None, [{"epoch": None, "problem": str(e)}])
        for entry in reversed(entries):
            epoch = int(entry["epoch"])
            try:
                state = self._load_verified(entry)
            except CheckpointError as e:
                logger.warning("Skipping checkpoint of epoch %d: %s", epoch, e)
                fallbacks.append({"epoch": epoch, "problem": str(e)})
                continue
            return LoadResult(state, epoch, fallbacks, best=bool(entry.get("best")))
        return LoadResult(None, None, fallbacks)

    def load_best(self) -> LoadResult:
        """The checkpoint marked as the best epoch's, verified.

        Without a mark (checkpoints written before marks existed) it is the newest
        valid one, with `best` False.

        Raises:
            CheckpointError: The marked checkpoint is missing, truncated, altered or
                unreadable, or the manifest is unreadable.
        """
        marked = [e for e in self.entries() if e.get("best")]
        if not marked:
            return self.load_latest_valid()
        entry = marked[-1]
        return LoadResult(self._load_verified(entry), int(entry["epoch"]), [], best=True)

    def _load_verified(self, entry: dict[str, Any]) -> dict[str, Any]:
        path = f"{self.folder}/{entry['file']}"
        state = read_verified(self.fs, path, entry)
        version = state.get("format_version") if isinstance(state, dict) else None
        if version != CHECKPOINT_FORMAT_VERSION:
            raise CheckpointError(
                f"{path!r} has format version {version!r}, but this version of "
                f"prefect-intermission reads version {CHECKPOINT_FORMAT_VERSION}. Resume it "
                "with the release that wrote it, or delete the trial's checkpoints to restart it."
            )
        return state

    def _delete_unlisted(self, keep: set[str]) -> None:
        """Delete checkpoints the manifest no longer lists, and partial files of dead writers."""
        fs = self.fs
        for path in fs.ls(self.folder, detail=False):
            name = os.path.basename(path.rstrip("/"))
            if name != _MANIFEST and name not in keep and (_EPOCH_FILE.match(name) or name.endswith(".partial")):
                fs.rm_file(path)

    def _delete_files(self, names: set[str]) -> None:
        """Delete checkpoints the manifest stopped listing."""
        for name in names:
            try:
                self.fs.rm_file(f"{self.folder}/{name}")
            except FileNotFoundError:
                pass
