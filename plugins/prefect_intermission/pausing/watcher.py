"""The flow-run watcher: a pause clicked in the UI or asked by `intermission pause` sets the signal.

A `FlowRunPauseWatcher` thread sets the study's `PauseSignal` when its flow run is
put in a PAUSED state (the Prefect UI's Pause / Suspend button and `intermission
pause` both do that), or when one of its triggers fires. It reads the run's state
through the process's shared poll (`flow_run_poll.py`), one request per interval.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol, Self
from uuid import uuid4

from prefect.client.schemas.objects import FlowRun
from prefect.states import State, Suspended

from prefect_intermission._threads import BackgroundLoop, ContextThread
from prefect_intermission.pausing.holds import TrialHolds
from prefect_intermission.pausing.run_states import (
    PAUSING_KEY_PREFIX,
    pause_reason_of_state,
)
from prefect_intermission.settings import settings
from prefect_intermission.training.pause_signal import PauseSignal

logger = logging.getLogger(__name__)


class RunReadings(Protocol):
    """Readings of one flow run (`flow_run_poll.FlowRunWatch` is one); close it when done."""

    def next(self, timeout: float) -> FlowRun | None:
        """The next reading, waiting up to `timeout` seconds; None when none came."""
        ...

    def close(self) -> None: ...

    def __enter__(self) -> Any: ...

    def __exit__(self, *exc_info: object) -> Any: ...


class WatchedRun(Protocol):
    """What the watcher needs of the run it watches (`flows/run_link.RunLink` has it)."""

    flow_run: FlowRun

    def watch(self, every: float) -> RunReadings: ...

    def set_state(self, state: State) -> None: ...


class FlowRunPauseWatcher(BackgroundLoop):
    """Background thread that sets a `PauseSignal` when the flow run becomes PAUSED,
    and keeps its held trials up to date.

    A pause with a timeout (the UI's lasts 5 minutes, then the server fails the run)
    is taken over at once with one that does not expire, so an epoch longer than
    the timeout cannot lose the run; the timeout's time is kept as `ui_resume_at`,
    when the study resumes by itself. Use it as a context manager around training.
    """

    def __init__(
        self,
        run: WatchedRun,
        signal: PauseSignal,
        *,
        poll_seconds: float | None = None,
        triggers: list[Callable[[], str | None]] | None = None,
        holds: TrialHolds | None = None,
    ) -> None:
        self.watched = run
        self.holds = holds
        self.signal = signal
        self.triggers = triggers or []
        self.poll_seconds = poll_seconds if poll_seconds is not None else settings().pause_poll_seconds
        self.ui_resume_at: datetime | None = None
        self._run: RunReadings | None = None
        self._thread = ContextThread(self._watch, name=f"intermission-pause-watcher-{run.flow_run.id}")

    def __enter__(self) -> Self:
        self._run = self.watched.watch(self.poll_seconds)
        return super().__enter__()

    def __exit__(self, *exc_info: object) -> None:
        run, self._run = self._run, None
        self._thread.stop(wake=run.close if run is not None else None)
        if run is not None:
            run.close()

    def _watch(self) -> None:
        run = self._run
        if run is None:
            return
        with run:
            while not self._thread.stopping.is_set() and not self.signal.is_requested():
                for trigger in self.triggers:
                    if (reason := trigger()) is not None:
                        logger.info("Pause requested (%s): pausing at the next epoch boundary.", reason)
                        self.signal.request(reason)
                        return
                self._read_holds()
                if self._paused(run):
                    return

    def _paused(self, run: RunReadings) -> bool:
        """Wait for the run's next reading (about one interval); whether it asks for a pause."""
        flow_run = run.next(timeout=self.poll_seconds)
        reason = pause_reason_of_state(flow_run.state) if flow_run is not None else None
        if reason is None:
            return False
        logger.info("Pause requested (%s): pausing at the next epoch boundary.", reason)
        self.signal.request(reason)
        self._take_over(flow_run.state)
        return True

    def _read_holds(self) -> None:
        if self.holds is None:
            return
        try:
            self.signal.set_held(self.holds.held())
        except Exception:  # a flaky database must not stop training
            logger.debug("Could not read the study's trial holds", exc_info=True)

    def _take_over(self, state: Any) -> None:
        if state.state_details.pause_timeout is None:
            return
        self.ui_resume_at = state.state_details.pause_timeout
        try:
            self.watched.set_state(
                Suspended(
                    pause_key=f"{PAUSING_KEY_PREFIX}{uuid4().hex}",
                    message="Pausing: every trial stops at its next epoch boundary.",
                )
            )
        except Exception:
            logger.warning("Could not lift the pause's timeout; it may expire.", exc_info=True)
