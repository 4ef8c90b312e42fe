"""A background thread that keeps its creator's context and stops on request."""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable
from typing import Self


class ContextThread:
    """A daemon thread running `target` in a copy of the creating context.

    The copy carries Prefect's settings (the API URL) and the run's logging context,
    so the thread's client calls and log lines reach the right server and flow run.
    `target` loops until `stopping` is set; `stop` sets it and waits for the thread.

    Args:
        target: The loop to run.
        name: The thread's name, as shown by debuggers and `py-spy`.
        join_timeout: How long `stop` waits for the loop to notice.
    """

    def __init__(self, target: Callable[[], None], *, name: str, join_timeout: float = 5.0) -> None:
        self.stopping = threading.Event()
        self._join_timeout = join_timeout
        self._thread = threading.Thread(
            target=contextvars.copy_context().run, args=(target,), name=name, daemon=True
        )

    def start(self) -> None:
        """Start the loop."""
        self._thread.start()

    def stop(self, *, wake: Callable[[], None] | None = None) -> None:
        """Ask the loop to end, wake it with `wake` if it waits on something else, and join it."""
        self.stopping.set()
        if wake is not None:
            wake()
        if self._thread.is_alive():
            self._thread.join(timeout=self._join_timeout)


class BackgroundLoop:
    """Base of the watchers: its `ContextThread` runs while the `with` block runs."""

    _thread: ContextThread

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._thread.stop()


def drop_inherited_exit_hooks() -> None:
    """Forget the exit hooks a forked process inherited from its parent's threads.

    CPython keeps them in `threading._threading_atexits` (private, 3.9 to 3.14): Prefect's
    log and event services register theirs there, and in a forked DataLoader worker, where
    those services' threads do not exist, they fail and make the worker exit with code 1.
    `check_thread_exit_hooks()` says when a Python release moves them.
    """
    hooks = getattr(threading, "_threading_atexits", None)
    if hooks is not None:
        hooks.clear()


def check_thread_exit_hooks() -> None:
    """Verify that the running Python still keeps thread exit hooks where
    `drop_inherited_exit_hooks` looks for them.

    Raises:
        RuntimeError: They moved; the message says what a forked DataLoader worker would do.
    """
    if not isinstance(getattr(threading, "_threading_atexits", None), list):
        raise RuntimeError(
            "This Python no longer keeps thread exit hooks in threading._threading_atexits, so "
            "forked DataLoader workers keep Prefect's and may exit with code 1. Adapt "
            "prefect_intermission/_threads.drop_inherited_exit_hooks."
        )
