"""Named fault points for the fault-injection tests: the process kills itself at one of them.

`INTERMISSION_FAULT=checkpoint.write:3` sends SIGKILL to this process the third time
it reaches `fault_point("checkpoint.write")`. Unset, a fault point does nothing.
"""

from __future__ import annotations

import os
import signal
import threading

_spec = os.environ.get("INTERMISSION_FAULT", "")
_name, _, _count = _spec.partition(":")
_remaining = int(_count or 1) if _name else 0
_lock = threading.Lock()

#: Every fault point in the package, for the tests that pick one.
FAULT_POINTS = (
    "checkpoint.write",  # the first bytes of a checkpoint (or manifest) written, the rest not
    "checkpoint.manifest",  # checkpoint written, manifest not yet updated
    "trial.report",  # epoch reported to Optuna, checkpoint not yet written
    "study.tell",  # trial about to be told to Optuna
    "study.told",  # trial told, sampler not yet stored
    "flow.suspend",  # everything stored, flow run about to be suspended
)


def fault_point(name: str) -> None:
    """Kill this process with SIGKILL if `INTERMISSION_FAULT` says so for this point."""
    global _remaining
    if name != _name:
        return
    with _lock:
        _remaining -= 1
        if _remaining == 0:
            os.kill(os.getpid(), signal.SIGKILL)
