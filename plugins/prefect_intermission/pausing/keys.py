"""Single-key pause and quit for a study run from a terminal.

When standard input is a terminal, `PauseKeys` reads key presses in cbreak mode
(no Enter needed, nothing echoed; Ctrl+C still interrupts): `p` pauses the study
and `q` quits after checkpointing. Both request the same safe pause, with reason
`"key"`: every trial stops at its next epoch boundary after its checkpoint. The
terminal's settings are put back on exit, whatever happened. Without a terminal
(a worker, a pipe, CI) nothing is read and nothing is printed.
"""

from __future__ import annotations

import os
import select
import sys
from types import TracebackType
from typing import Any, TextIO

from prefect_intermission._logging import run_logger
from prefect_intermission._threads import ContextThread
from prefect_intermission.training.pause_signal import PauseSignal

try:
    import termios
except ImportError:  # Windows: no terminal modes to set, so keys are not read there
    termios = None  # type: ignore[assignment]

HINT = "press p to pause, q to quit after checkpointing"

_MESSAGES = {
    "p": "p: pausing. Every trial stops at its next epoch boundary after its checkpoint.",
    "q": "q: quitting after checkpointing. Every trial stops at its next epoch boundary after its checkpoint.",
}


def _in_foreground(fd: int) -> bool:
    """Whether this process may change the terminal's settings without being stopped (SIGTTOU)."""
    try:
        return os.tcgetpgrp(fd) == os.getpgrp()
    except OSError:  # not our controlling terminal: no job control applies
        return True


class PauseKeys:
    """Reads `p` and `q` from the terminal while a study trains (a context manager).

    Args:
        signal: The study's pause signal.
        stdin: The input to read keys from; `sys.stdin` by default.
        out: Where the hint goes; `sys.stderr` by default.
    """

    def __init__(self, signal: PauseSignal, *, stdin: TextIO | None = None, out: TextIO | None = None) -> None:
        self.signal = signal
        self.stdin = stdin if stdin is not None else sys.stdin
        self.out = out if out is not None else sys.stderr
        self.enabled = self._is_terminal()
        self._saved: list[Any] | None = None
        self._log = run_logger(__name__)
        self._thread = ContextThread(self._read, name="intermission-keys", join_timeout=1)

    def _is_terminal(self) -> bool:
        if termios is None:
            return False
        try:
            fd = self.stdin.fileno()
        except (AttributeError, ValueError, OSError):  # closed, or not a real file
            return False
        return self.stdin.isatty() and _in_foreground(fd)

    def __enter__(self) -> PauseKeys:
        if not self.enabled:
            return self
        fd = self.stdin.fileno()
        self._saved = termios.tcgetattr(fd)
        mode = termios.tcgetattr(fd)
        mode[3] &= ~(termios.ICANON | termios.ECHO)  # lflag: key by key, no echo; ISIG stays
        mode[6][termios.VMIN], mode[6][termios.VTIME] = 1, 0
        termios.tcsetattr(fd, termios.TCSANOW, mode)
        try:
            print(HINT, file=self.out, flush=True)
            self._thread.start()
        except BaseException:
            self._restore()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self.enabled:
            return
        try:
            self._thread.stop()
        finally:
            self._restore()

    def _restore(self) -> None:
        if self._saved is not None:
            termios.tcsetattr(self.stdin.fileno(), termios.TCSADRAIN, self._saved)
            self._saved = None

    def _read(self) -> None:
        fd = self.stdin.fileno()
        while not self._thread.stopping.is_set():
            ready, _, _ = select.select([fd], [], [], 0.2)
            if not ready:
                continue
            try:
                typed = os.read(fd, 64)
            except OSError:
                return
            if not typed:  # end of input
                return
            if typed.startswith(b"\x1b"):  # a function or arrow key (F1 is ESC O P): not ours
                continue
            for key in typed.decode(errors="ignore"):
                if key in _MESSAGES:
                    self._log.info(_MESSAGES[key])
                    self.signal.request("key")
