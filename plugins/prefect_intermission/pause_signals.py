"""How a pause request reaches the trials of a running study.

Trials read a `PauseSignal` at every epoch boundary; reading it costs no I/O. A
`FlowRunPauseWatcher` thread sets the signal when the flow run is put in a PAUSED
state: the Prefect UI's Pause / Suspend button and `intermission pause` both do that.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from types import TracebackType
from typing import Any
from uuid import UUID, uuid4

from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.states import Paused, State, Suspended

from prefect_intermission._threads import ContextThread
from prefect_intermission.trial_holds import TrialHolds

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


class StudyStopped(BaseException):
    """Raised in a trial that would record an epoch after the study was stopped at once."""


class PauseSignal:
    """A thread-safe flag saying that the study should pause, and why; and which
    trials are held (paused on their own while the others go on)."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._reasons: list[str] = []
        self._lock = threading.Lock()
        self._held: frozenset[int] = frozenset()
        self._recorders = threading.Condition()
        self._recording_now = 0
        self._stopped = False

    def request(self, reason: str) -> None:
        """Ask every trial to pause at its next epoch boundary (every reason is kept)."""
        with self._lock:
            self._reasons.append(reason)
            self._event.set()

    @contextmanager
    def recording(self, trial_number: int, last_epoch: int) -> Iterator[None]:
        """Around a trial recording an epoch (report, checkpoint, log line); trials record at once.

        Raises:
            StudyStopped: The study was stopped at once (`stop_recording`): the trial
                records nothing more; it continues from its last checkpoint next time.
        """
        with self._recorders:
            if self._stopped:
                raise StudyStopped(f"Trial {trial_number} stopped at once after epoch {last_epoch}.")
            self._recording_now += 1
        try:
            yield
        finally:
            with self._recorders:
                self._recording_now -= 1
                self._recorders.notify_all()

    def stop_recording(self, *, timeout: float = 60.0) -> None:
        """Stop at once: let no trial start recording an epoch, and wait (up to `timeout`
        seconds) for the epochs being recorded to be stored."""
        with self._recorders:
            self._stopped = True
            self._recorders.wait_for(lambda: self._recording_now == 0, timeout=timeout)

    def clear(self) -> None:
        """Forget the pause once it was carried out and the study goes on in this process."""
        with self._lock:
            self._reasons = []
            self._event.clear()

    @property
    def reasons(self) -> list[str]:
        """Every reason a pause was requested for, first first."""
        with self._lock:
            return list(self._reasons)

    def is_requested(self) -> bool:
        """Whether a pause was requested."""
        return self._event.is_set()

    def set_held(self, trial_numbers: set[int] | frozenset[int]) -> None:
        """The trials that should pause on their own, as read from the study's holds."""
        self._held = frozenset(trial_numbers)

    @property
    def held(self) -> frozenset[int]:
        """The trials held now."""
        return self._held

    def pauses(self, trial_number: int) -> bool:
        """Whether trial `trial_number` should pause: the study pauses, or the trial is held."""
        return self.is_requested() or trial_number in self._held

    @property
    def reason(self) -> str | None:
        """What requested the pause first (`"ui"`, `"cli"`, ...), or None."""
        with self._lock:
            return self._reasons[0] if self._reasons else None

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


def _modified_at(path: str) -> float | None:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


def pausing_state(*, reason: str, deployment: bool) -> State:
    """The PAUSED state that tells a study's trial runs to stop: "Pausing", no timeout.

    It is not named "Suspended", so Prefect's engine does not treat it as a suspension
    of the run it is set on (that would end the run at its next orchestration point and
    be remembered by the engine): the study carries out the pause itself.
    """
    return Paused(
        name="Pausing",
        reschedule=deployment,
        pause_key=f"{PAUSING_KEY_PREFIX}{uuid4().hex}",
        message=f"Pausing ({reason}): every trial stops at its next epoch boundary.",
    )


def pause_file_trigger(path: str) -> Callable[[], str | None]:
    """A trigger that asks for a pause once `path` is created (or touched, if it was already there).

    A file left over from an earlier pause does not pause a resumed study again.
    """
    initial = _modified_at(path)
    if initial is not None:
        logger.warning(
            "The pause file %s exists already; it is ignored until it is touched or created again.", path
        )

    def created() -> str | None:
        modified = _modified_at(path)
        return "file" if modified is not None and modified != initial else None

    return created


def wait_until_removed(
    path: str, *, unless: Callable[[], bool] = lambda: False, poll_seconds: float = 0.5
) -> None:
    """Block until the file at `path` is gone, or `unless()` says to stop waiting."""
    while os.path.exists(path) and not unless():
        time.sleep(poll_seconds)


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
    """Background thread that sets a `PauseSignal` when the flow run becomes PAUSED,
    and keeps its held trials up to date.

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
        holds: TrialHolds | None = None,
    ) -> None:
        self.flow_run_id = flow_run_id
        self.holds = holds
        self.signal = signal
        self.triggers = triggers or []
        self.poll_seconds = poll_seconds if poll_seconds is not None else poll_seconds_from_env()
        self._thread = ContextThread(self._watch, name=f"intermission-pause-watcher-{flow_run_id}")

    def __enter__(self) -> FlowRunPauseWatcher:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._thread.stop()

    def _watch(self) -> None:
        with get_client(sync_client=True) as client:
            while not self._thread.stopping.is_set() and not self.signal.is_requested():
                for trigger in self.triggers:
                    if (reason := trigger()) is not None:
                        logger.info("Pause requested (%s): pausing at the next epoch boundary.", reason)
                        self.signal.request(reason)
                        return
                self._read_holds()
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
                self._thread.stopping.wait(self.poll_seconds)

    def _read_holds(self) -> None:
        if self.holds is None:
            return
        try:
            self.signal.set_held(self.holds.held())
        except Exception:  # a flaky database must not stop training
            logger.debug("Could not read the study's trial holds", exc_info=True)

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
