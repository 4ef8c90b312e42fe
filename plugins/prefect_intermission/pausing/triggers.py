"""Pause triggers the study's watcher checks besides the run's state: a pause file, a pause window."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from datetime import datetime, timezone

from prefect_intermission.pausing.reasons import PauseReason

logger = logging.getLogger(__name__)


def _modified_at(path: str) -> float | None:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


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
        return PauseReason.FILE if modified is not None and modified != initial else None

    return created


def wait_until_removed(
    path: str, *, unless: Callable[[], bool] = lambda: False, poll_seconds: float = 0.5
) -> None:
    """Block until the file at `path` is gone, or `unless()` says to stop waiting."""
    while os.path.exists(path) and not unless():
        time.sleep(poll_seconds)


def pause_window_trigger(at: datetime) -> Callable[[], str | None]:
    """A trigger that asks for a pause once the time `at` (timezone-aware) has come."""
    return lambda: PauseReason.WINDOW if datetime.now(timezone.utc) >= at else None
