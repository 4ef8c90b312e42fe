"""Named fault points for the fault-injection tests: the process kills itself at one of them.

`INTERMISSION_FAULT=checkpoint.write:3` sends SIGKILL to this process the third time
it reaches `fault_point("checkpoint.write")`. Unset, a fault point does nothing.
"""

from __future__ import annotations

import os
import signal
import threading

from prefect_intermission.settings import IntermissionSettings

_lock = threading.Lock()
_armed: tuple[str, int] | None = None  # the fault point and the visits left, read on first use

#: Every fault point in the package, for the tests that pick one.
FAULT_POINTS = (
    "checkpoint.write",  # the first bytes of a checkpoint (or manifest) written, the rest not
    "checkpoint.manifest",  # checkpoint written, manifest not yet updated
    "writer.before_write",  # background writer: state copied, nothing written yet
    "writer.before_manifest",  # background writer: checkpoint written, manifest not yet updated
    "writer.after_manifest",  # background writer: listed in the manifest, old ones not yet rotated
    "trial.report",  # epoch reported to Optuna, checkpoint not yet written
    "study.tell",  # trial about to be told to Optuna
    "study.told",  # trial told, sampler not yet stored
    "flow.suspend",  # everything stored, flow run about to be suspended
)


def fault_point(name: str) -> None:
    """Kill this process with SIGKILL if `INTERMISSION_FAULT` says so for this point."""
    global _armed
    with _lock:
        if _armed is None:
            point, _, count = IntermissionSettings().fault.partition(":")
            _armed = (point, int(count or 1)) if point else ("", 0)
        if name != _armed[0]:
            return
        _armed = (name, _armed[1] - 1)
        if _armed[1] == 0:
            os.kill(os.getpid(), signal.SIGKILL)
