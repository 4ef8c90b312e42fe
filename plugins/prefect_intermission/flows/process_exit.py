"""Ending the flow's process at once, once a pause is carried out.

After a deployment run is suspended (or handed back to the `prefect flow-run execute` that
got SIGTERM), its process has nothing left to do but exit, and the sooner it is gone the
sooner the machine and its GPU are free. Prefect's engine still reports the run's final
state, logs "Finished in state Suspended", drains its log and event services and exits
with code 0, as without this module. What it removes:

- for every run of this package's flows, paused or not, the engine's wait for its
  flow-run heartbeat thread, which sleeps in 1 s steps (half a second on average);
- after `exit_at_once()`, the interpreter's teardown of every module with PyTorch loaded (1 to 2 s on two idle
  cores, several seconds on busy ones): once the interpreter has run every exit hook
  (Prefect's services drain theirs first, then each `atexit` function, a user's too, in
  the usual order), the process ends with `os._exit`.

It acts only in a process that exists to run one flow run (`python -m prefect.engine`,
what workers and `prefect flow-run execute` start), and not after an uncaught exception,
whose exit code and traceback stand. Elsewhere (a flow called from a script, a test)
the process exits as it always does. The exit code is the engine's after a pause, 0, even
if the engine failed after the pause was carried out: the run is suspended (or left to its
supervisor) by then, and a non-zero code would have its worker mark it crashed.
"""

from __future__ import annotations

import atexit
import os
import sys

from prefect_intermission._prefect_internals import heartbeats_not_awaited_when

_exit_code: int | None = None


def exit_at_once(code: int = 0) -> None:
    """End this process with `code` as soon as Prefect's engine has finished with the run.

    Call it when nothing more is to be recorded: the run's state is set and the pause stored.
    Does nothing outside a `python -m prefect.engine` process.
    """
    global _exit_code
    if not runs_one_flow_run():
        return
    if _exit_code is None:
        atexit.register(_exit_now)  # registered last, so it runs first of the exit hooks
    _exit_code = code


def runs_one_flow_run() -> bool:
    """Whether this process is Prefect's engine running one flow run (`python -m prefect.engine`)."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return spec is not None and spec.name == "prefect.engine"


def _exit_now() -> None:
    """The first exit hook: run all the others, flush what is buffered, and end the process."""
    if _exit_code is None or hasattr(sys, "last_value"):  # an uncaught exception: leave it be
        return
    atexit.unregister(_exit_now)
    atexit._run_exitfuncs()  # every other exit hook, in the order the interpreter runs them
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=10)  # anything those hooks logged or emitted
    EventsWorker.drain_all(timeout=10)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed or gone: nothing to flush
            pass
    os._exit(_exit_code)


def runs_a_flow_of_ours(engine: object) -> bool:
    """Whether `engine` runs one of this package's flows (a study, a trial, a control flow)."""
    function = getattr(getattr(engine, "flow", None), "fn", None)
    return getattr(function, "__module__", "").startswith(f"{__package__.partition('.')[0]}.")


# Prefect's engine waits up to a second for its heartbeat thread when a run ends; a run of
# ours ends without that wait, whether it completes, pauses or fails.
heartbeats_not_awaited_when(runs_a_flow_of_ours)
