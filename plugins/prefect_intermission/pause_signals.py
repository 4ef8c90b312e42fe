"""How a pause request reaches the trials of a running study.

Trials read a `PauseSignal` at every epoch boundary; reading it costs no I/O. A
`FlowRunPauseWatcher` thread sets the signal when the flow run is put in a PAUSED
state: the Prefect UI's Pause / Suspend button and `intermission pause` both do that.
"""

from __future__ import annotations

import contextvars
import logging
import os
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from types import TracebackType
from typing import Any
from uuid import UUID, uuid4

from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.states import Suspended

logger = logging.getLogger(__name__)

#: Pause keys of requests made by `intermission pause` start with this.
CLI_PAUSE_KEY_PREFIX = "intermission-cli-"
#: Pause keys of requests made by the `pause-study` control deployment start with this.
CONTROL_PAUSE_KEY_PREFIX = "intermission-control-"
#: Pause keys of the suspensions the study flow makes itself start with this.
FLOW_PAUSE_KEY_PREFIX = "intermission-flow-"
#: Pause keys of a pause the study took over and is still carrying out.
PAUSING_KEY_PREFIX = "intermission-pausing-"

_DEFAULT_POLL_SECONDS = 1.0


class PauseSignal:
    """A thread-safe flag saying that the study should pause, and why."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._reason: str | None = None
        self._lock = threading.Lock()

    def request(self, reason: str) -> None:
        """Ask every trial to pause at its next epoch boundary (the first reason wins)."""
        with self._lock:
            if self._reason is None:
                self._reason = reason
            self._event.set()

    def is_requested(self) -> bool:
        """Whether a pause was requested."""
        return self._event.is_set()

    @property
    def reason(self) -> str | None:
        """What requested the pause (`"ui"`, `"cli"`, ...), or None."""
        return self._reason

    def wait(self, timeout: float) -> bool:
        """Block until a pause is requested or `timeout` seconds pass."""
        return self._event.wait(timeout)


def pause_reason_of_state(state: Any) -> str | None:
    """The pause reason a flow-run state stands for, or None if it is not a pause."""
    if state is None or not state.is_paused():
        return None
    key = state.state_details.pause_key or ""
    if key.startswith(CONTROL_PAUSE_KEY_PREFIX):
        return "deployment"
    return "cli" if key.startswith(CLI_PAUSE_KEY_PREFIX) else "ui"


def pause_file_trigger(path: str) -> Callable[[], str | None]:
    """A trigger that asks for a pause once `path` exists."""
    return lambda: "file" if os.path.exists(path) else None


def pause_window_trigger(at: datetime) -> Callable[[], str | None]:
    """A trigger that asks for a pause once the time `at` (timezone-aware) has come."""
    return lambda: "window" if datetime.now(timezone.utc) >= at else None


def poll_seconds_from_env() -> float:
    """Seconds between two reads of the flow run's state (`INTERMISSION_PAUSE_POLL_SECONDS`)."""
    raw = os.environ.get("INTERMISSION_PAUSE_POLL_SECONDS", "")
    try:
        value = float(raw) if raw else _DEFAULT_POLL_SECONDS
    except ValueError:
        logger.warning("Ignoring INTERMISSION_PAUSE_POLL_SECONDS=%r: not a number.", raw)
        return _DEFAULT_POLL_SECONDS
    return max(value, 0.05)


class FlowRunPauseWatcher:
    """Background thread that sets a `PauseSignal` when the flow run becomes PAUSED.

    A pause with a timeout (the UI's lasts 5 minutes, then the server fails the run)
    is taken over at once with one that does not expire, so an epoch longer than
    the timeout cannot lose the run. Use it as a context manager around training.
    """

    def __init__(
        self,
        flow_run_id: UUID,
        signal: PauseSignal,
        *,
        poll_seconds: float | None = None,
        triggers: list[Callable[[], str | None]] | None = None,
    ) -> None:
        self.flow_run_id = flow_run_id
        self.signal = signal
        self.triggers = triggers or []
        self.poll_seconds = poll_seconds if poll_seconds is not None else poll_seconds_from_env()
        self._stop = threading.Event()
        # The thread runs in a copy of this context: Prefect's settings (API URL) live there.
        self._thread = threading.Thread(
            target=contextvars.copy_context().run, args=(self._watch,),
            name=f"intermission-pause-watcher-{flow_run_id}", daemon=True,
        )

    def __enter__(self) -> FlowRunPauseWatcher:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _watch(self) -> None:
        with get_client(sync_client=True) as client:
            while not self._stop.is_set() and not self.signal.is_requested():
                for trigger in self.triggers:
                    if (reason := trigger()) is not None:
                        logger.info("Pause requested (%s): pausing at the next epoch boundary.", reason)
                        self.signal.request(reason)
                        return
                try:
                    state = client.read_flow_run(self.flow_run_id).state
                except Exception:  # a flaky API must not stop training
                    logger.debug("Could not read the flow run's state", exc_info=True)
                else:
                    reason = pause_reason_of_state(state)
                    if reason is not None:
                        logger.info("Pause requested (%s): pausing at the next epoch boundary.", reason)
                        self.signal.request(reason)
                        self._take_over(client, state)
                        return
                self._stop.wait(self.poll_seconds)

    def _take_over(self, client: SyncPrefectClient, state: Any) -> None:
        if state.state_details.pause_timeout is None:
            return
        try:
            client.set_flow_run_state(
                self.flow_run_id,
                Suspended(
                    pause_key=f"{PAUSING_KEY_PREFIX}{uuid4().hex}",
                    message="Pausing: every trial stops at its next epoch boundary.",
                ),
                force=True,
            )
        except Exception:
            logger.warning("Could not lift the pause's timeout; it may expire.", exc_info=True)
