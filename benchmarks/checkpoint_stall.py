"""How long a checkpoint blocks the training thread, beside a plain in-memory copy of the
same state (`copy.deepcopy`, what a user would do to keep a snapshot), in the same run.

With background checkpoints, `save_in_background` takes a consistent copy and returns; the
write happens in its own thread while the next epoch trains. Each measured call finds the
previous write finished (an epoch passed in between), as at a real epoch boundary, so the
stall is the copy plus the hand-off. The synchronous `save` is measured beside it.
"""

from __future__ import annotations

import copy
import statistics
import time
from typing import Any

from benchmarks.checkpoint_io import model_state
from prefect_intermission import CheckpointStore


def measure(url: str, *, megabytes: int, repeats: int) -> dict[str, Any]:
    """Median training-thread stall of a background checkpoint, of a plain deep copy and of a
    synchronous save of the same state, interleaved."""
    state = model_state(megabytes)
    trial = CheckpointStore(url, keep_last=2).for_trial("checkpoint-stall", 0)
    trial.save(0, state)  # folder and manifest exist, as after a trial's first epoch
    stall, plain_copy, sync_save = [], [], []
    for epoch in range(1, repeats + 1):
        t = time.perf_counter()
        copied = copy.deepcopy(state)
        plain_copy.append(time.perf_counter() - t)
        del copied

        t = time.perf_counter()
        trial.save_in_background(epoch, state)
        stall.append(time.perf_counter() - t)
        trial.wait()  # the epoch that trains meanwhile: not the training thread's stall

        t = time.perf_counter()
        trial.save(repeats + epoch, state)
        sync_save.append(time.perf_counter() - t)
    return {
        "value": statistics.median(stall) / statistics.median(plain_copy),
        "stall_ms": statistics.median(stall) * 1000,
        "copy_ms": statistics.median(plain_copy) * 1000,
        "sync_save_ms": statistics.median(sync_save) * 1000,
        "bytes": sum(t.nbytes for t in state["components"]["model"].values()),
        "repeats": repeats,
    }


if __name__ == "__main__":
    import json
    import sys
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        print(json.dumps(measure(folder, megabytes=int(sys.argv[1]), repeats=int(sys.argv[2])), indent=2))
