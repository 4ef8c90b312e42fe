"""SIGTERM and Ctrl+C pause a running study instead of killing it.

While a study trains, `PauseOnSignals` turns the first SIGTERM or Ctrl+C (SIGINT)
into a pause request with reason `"signal"`: every trial stops at its next epoch
boundary after its checkpoint, exactly like a pause from the UI. A second Ctrl+C
raises `StopNow` in the main thread; the study flow then stores what can be stored
and the process exits without waiting for the epoch in progress.

A SIGTERM that comes from a Prefect cancellation is not a pause: when the flow run
is Cancelling or Cancelled (or Prefect's runner announced a cancel), the handler that
was installed before (Prefect's) gets the signal.

Under `prefect flow-run execute` (the command of Prefect's kubernetes worker's pods) with
`PREFECT_FLOW_RUN_EXECUTE_SIGTERM_BEHAVIOR=reschedule` or `relinquish`, the supervisor
announces that behaviour before it passes SIGTERM on (`supervisor_intent()`): the SIGTERM
still pauses the study, which then leaves the run to the supervisor (rescheduled, or retried
by the infrastructure) instead of suspending it.

The signal handlers themselves only record the signal and wake a helper thread,
which reads the flow run's state and requests the pause: a handler runs in the
middle of whatever the main thread was doing, so it must not take locks or do I/O.
"""

from __future__ import annotations

import contextvars
import os
import signal
import threading
from collections import deque
from collections.abc import Callable
from contextlib import ExitStack
from types import FrameType, TracebackType
from typing import Any
from uuid import UUID

from prefect.client.orchestration import get_client

from prefect_intermission._logging import run_logger
from prefect_intermission._prefect_internals import (
    SUPERVISOR_INTENTS,
    acknowledging_supervisor_intents,
    commit_cancel_intent,
    control_intent,
    is_prefect_sigterm_handler,
)
from prefect_intermission.training.pause_signal import PauseSignal

Handler = Callable[[int, FrameType | None], Any] | int | None


class StopNow(KeyboardInterrupt):
    """Raised in the main thread by a second Ctrl+C: stop without finishing the epoch."""


def supervisor_intent() -> str | None:
    """What the `prefect flow-run execute` supervisor that sent SIGTERM does with the run:
    "reschedule" (it is Scheduled again), "relinquish" (the infrastructure runs it again), or None."""
    intent = control_intent()
    return intent if intent in SUPERVISOR_INTENTS else None


def flow_run_is_cancelling(flow_run_id: UUID) -> bool:
    """Whether Prefect is cancelling the flow run (it sends SIGTERM once it is Cancelling)."""
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(flow_run_id).state
    return state is not None and (state.is_cancelling() or state.is_cancelled())


class PauseOnSignals:
    """Pause on the first SIGTERM or Ctrl+C, stop at once on a second Ctrl+C.

    A context manager around training: it installs its handlers on entry and puts
    the previous ones back on exit (after a second Ctrl+C, Ctrl+C stays ignored: the
    process is saving what it can, then exits). Off the main thread, where Python
    cannot install signal handlers, it does nothing.

    Args:
        signal: The study's pause signal.
        flow_run_id: The flow run, read to tell a Prefect cancellation from a pause.
    """

    def __init__(self, signal: PauseSignal, flow_run_id: UUID) -> None:
        self.signal = signal
        self.flow_run_id = flow_run_id
        self._log = run_logger(__name__)
        self.enabled = threading.current_thread() is threading.main_thread()
        self._previous: dict[int, Handler] = {}
        self._received: deque[int] = deque()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._interrupts = 0
        self._defer_sigterm = False
        self._sigterm_handler = self._on_sigterm  # the one object installed, to recognise it
        self._exits = ExitStack()
        # The thread runs in a copy of this context: Prefect's settings (API URL) live there.
        self._thread = threading.Thread(
            target=contextvars.copy_context().run, args=(self._handle_received,),
            name=f"intermission-signals-{flow_run_id}", daemon=True,
        )

    def __enter__(self) -> PauseOnSignals:
        if not self.enabled:
            return self
        self._thread.start()
        self._exits.enter_context(acknowledging_supervisor_intents(self._sigterm_handler))
        for signum, handler in ((signal.SIGINT, self._on_sigint), (signal.SIGTERM, self._sigterm_handler)):
            self._previous[signum] = signal.signal(signum, handler)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self.enabled:
            return
        for signum, handler in self._previous.items():
            if signum == signal.SIGINT and self._interrupts >= 2:
                handler = signal.SIG_IGN  # stopping: a third Ctrl+C must not cut the saving short
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self._exits.close()
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=5)

    # -- in the main thread, between two bytecodes of whatever it was doing ----------
    def _on_sigint(self, signum: int, frame: FrameType | None) -> None:
        self._interrupts += 1
        if self._interrupts == 2:
            raise StopNow("Stopped at once by a second Ctrl+C.")
        if self._interrupts > 2:
            return  # already stopping
        self._received.append(signum)
        self._wake.set()

    def _on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        if self._defer_sigterm:
            if is_prefect_sigterm_handler(self._previous.get(signum)):
                # The runner sent its cancel intent before this SIGTERM, but Prefect's control
                # listener acknowledges one only while Prefect's own handler is installed, so it
                # refused it. Commit it as Prefect would have: the engine then cancels the run
                # (Cancelling -> Cancelled) instead of marking it crashed.
                commit_cancel_intent()
            self._chain(signum, frame)
        elif control_intent() is not None and supervisor_intent() is None:
            self._chain(signum, frame)  # Prefect's runner already told the engine it cancels
        else:
            self._received.append(signum)
            self._wake.set()

    def _chain(self, signum: int, frame: FrameType | None) -> None:
        """Hand the signal to the handler installed before ours, as if ours were not there."""
        previous = self._previous.get(signum)
        if callable(previous):
            previous(signum, frame)
        elif previous != signal.SIG_IGN:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

    # -- in the helper thread ----------------------------------------------------------
    def _handle_received(self) -> None:
        while not self._stop.is_set():
            self._wake.wait()
            self._wake.clear()
            while self._received:
                signum = self._received.popleft()
                if signum == signal.SIGTERM:
                    self._sigterm()
                else:
                    self._log.info(
                        "Ctrl+C: pausing. Every trial stops at its next epoch boundary after "
                        "its checkpoint; press Ctrl+C again to stop at once (the epoch in "
                        "progress is lost)."
                    )
                    self.signal.request("signal")

    def _sigterm(self) -> None:
        try:
            cancelling = flow_run_is_cancelling(self.flow_run_id)
        except Exception:  # no answer from the API: keeping the work is the safe choice
            self._log.warning("Could not read the flow run's state; treating SIGTERM as a pause.", exc_info=True)
            cancelling = False
        if cancelling:
            self._log.info("SIGTERM: the flow run is being cancelled; leaving it to Prefect.")
            self._defer_sigterm = True
            os.kill(os.getpid(), signal.SIGTERM)  # delivered to the main thread, which chains it
            return
        if (intent := supervisor_intent()) is not None:
            self._log.info(
                "SIGTERM from `prefect flow-run execute` (%s): pausing. Every trial stops at its next "
                "epoch boundary after its checkpoint; then the run is left to Prefect to %s.",
                intent, "reschedule" if intent == "reschedule" else "run again on new infrastructure",
            )
        else:
            self._log.info("SIGTERM: pausing. Every trial stops at its next epoch boundary after its checkpoint.")
        self.signal.request("signal")
