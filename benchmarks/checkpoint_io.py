"""Checkpoint save/load of a large model state against a raw write/read of the same bytes
to the same place (a local folder, or a bucket on an S3-protocol server)."""

from __future__ import annotations

import io
import os
import statistics
import time
from typing import Any

import fsspec
import torch
from fsspec.implementations.local import LocalFileSystem

from prefect_intermission import CheckpointStore


def model_state(megabytes: int) -> dict[str, Any]:
    """A checkpoint-like state: a `state_dict` of float32 tensors, `megabytes` in all."""
    per_tensor = 4 * 2**20  # 4 MiB tensors, like the layers of a mid-sized model
    count = max(1, megabytes * 2**20 // per_tensor)
    generator = torch.Generator().manual_seed(0)
    return {
        "epoch": 0,
        "components": {"model": {f"layer{i}.weight": torch.randn(per_tensor // 4, generator=generator) for i in range(count)}},
    }


def _raw_write(fs: fsspec.AbstractFileSystem, path: str, data: bytes) -> None:
    """What a user would do without the plugin: write the bytes, durably, in one go."""
    if isinstance(fs, LocalFileSystem):
        with open(path, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    else:
        fs.pipe_file(path, data)


def _raw_read(fs: fsspec.AbstractFileSystem, path: str) -> bytes:
    if isinstance(fs, LocalFileSystem):
        with open(path, "rb") as f:
            return f.read()
    return fs.cat_file(path)


def measure(url: str, *, megabytes: int, repeats: int, storage_options: dict[str, Any] | None = None) -> dict[str, float]:
    """Median save/load seconds through the checkpoint store and raw write/read seconds, interleaved."""
    state = model_state(megabytes)
    store = CheckpointStore(url, keep_last=2, storage_options=storage_options)
    trial = store.for_trial("checkpoint-io", 0)
    buffer = io.BytesIO()
    torch.save({"format_version": 1, **state}, buffer)
    payload = buffer.getvalue()  # the same number of bytes the checkpoint holds
    raw_folder = f"{store.root}/raw"
    if isinstance(store.fs, LocalFileSystem):
        os.makedirs(raw_folder, exist_ok=True)
    # Open the connection (or warm the filesystem) before anything is timed.
    _raw_write(store.fs, f"{raw_folder}/warm-up.bin", b"x" * 1024)
    _raw_read(store.fs, f"{raw_folder}/warm-up.bin")
    save, load, raw_write, raw_read = [], [], [], []
    for epoch in range(repeats):
        raw_path = f"{raw_folder}/blob-{epoch}.bin"

        def timed_raw_write() -> None:
            t = time.perf_counter()
            _raw_write(store.fs, raw_path, payload)
            raw_write.append(time.perf_counter() - t)

        def timed_save() -> None:
            t = time.perf_counter()
            trial.save(epoch, state)
            save.append(time.perf_counter() - t)

        # Alternate which goes first, so neither always meets the other's writeback.
        for write in (timed_raw_write, timed_save) if epoch % 2 == 0 else (timed_save, timed_raw_write):
            write()

        t = time.perf_counter()
        data = _raw_read(store.fs, raw_path)
        raw_read.append(time.perf_counter() - t)
        assert len(data) == len(payload)
        del data

        t = time.perf_counter()
        loaded = trial.load_latest_valid().state  # verified against the manifest, as on resume
        load.append(time.perf_counter() - t)
        assert len(loaded["components"]["model"]) == len(state["components"]["model"])
        del loaded
        store.fs.rm_file(raw_path)
    return {
        "bytes": len(payload),
        "save_s": statistics.median(save),
        "raw_write_s": statistics.median(raw_write),
        "load_s": statistics.median(load),
        "raw_read_s": statistics.median(raw_read),
        "write_ratio": statistics.median(save) / statistics.median(raw_write),
        "read_ratio": statistics.median(load) / statistics.median(raw_read),
    }
