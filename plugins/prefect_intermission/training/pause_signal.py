"""The pause signal: a flag every trial reads at its boundaries, set by whatever asks for a pause.

Reading it costs no I/O, and it imports nothing from Prefect: the training loop uses it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

logger = logging.getLogger(__name__)


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
        self._listeners: list[Callable[[str], None]] = []

    def request(self, reason: str) -> None:
        """Ask every trial to pause at its next epoch boundary (every reason is kept)."""
        with self._lock:
            first = not self._event.is_set()
            self._reasons.append(reason)
            self._event.set()
        if first:
            for listener in self._listeners:
                try:
                    listener(reason)
                except Exception:  # saying so must never stop the pause itself
                    logger.debug("A pause listener failed", exc_info=True)

    def on_request(self, listener: Callable[[str], None]) -> None:
        """Call `listener(reason)` when a pause is first requested, on the requesting thread
        (a trial's, a watcher's, or a signal handler's): it must return at once."""
        self._listeners.append(listener)

    @contextmanager
    def recording(self, trial_number: int, last_epoch: int) -> Iterator[None]:
        """Around a trial recording an epoch (report, checkpoint, log line); trials record at once.

        Raises:
            StudyStopped: The study was stopped at once (`stop_recording`): the trial
                records nothing more; it continues from its last checkpoint next time.
        """
        with self._recorders:
            if self._stopped:
                raise StudyStopped(f"Trial {trial_number} stopped at once: {last_epoch + 1} epochs done.")
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
