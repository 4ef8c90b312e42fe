"""A study script run in a pseudo-terminal of its own, as a person runs it: keys and Ctrl+C reach it
through the terminal, and everything it prints is collected."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

from deployments.local_stack import PROJECT_ROOT

SCRIPT = Path(__file__).with_name("run_study_script.py")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def study_command(tmp_path: Path, name: str) -> list[str]:
    """The command that runs (and, run again, continues) a study as a plain script."""
    return [sys.executable, str(SCRIPT), name, f"sqlite:///{tmp_path}/studies.db", str(tmp_path / "ckpt")]


def _take_terminal() -> None:
    """In the child, after `setsid`: make the pty on stdin its controlling terminal."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class Terminal:
    """A process running in a new session whose controlling terminal is a pty we hold."""

    def __init__(self, command: list[str], env: dict[str, str]) -> None:
        self._leader, follower = pty.openpty()
        self.process = subprocess.Popen(
            command, env=env, cwd=PROJECT_ROOT, stdin=follower, stdout=follower, stderr=follower,
            start_new_session=True, preexec_fn=_take_terminal,
        )
        os.close(follower)
        self._output = bytearray()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self._leader, 65536)
            except OSError:  # the other side closed: the process ended
                return
            if not chunk:
                return
            self._output += chunk

    @property
    def screen(self) -> str:
        """Everything printed so far, without terminal escape codes."""
        return ANSI.sub("", bytes(self._output).decode(errors="replace"))

    def type(self, keys: bytes) -> None:
        """Type on the terminal's keyboard (b"\\x03" is Ctrl+C)."""
        os.write(self._leader, keys)

    def wait_for_text(self, pattern: str, timeout: float) -> re.Match[str]:
        """Wait until the screen shows `pattern` (a regular expression); the last match."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            matches = list(re.finditer(pattern, self.screen))
            if matches:
                return matches[-1]
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise TimeoutError(f"{pattern!r} not shown within {timeout} s; the screen ends:\n{self.screen[-3000:]}")

    def wait(self, timeout: float) -> int:
        """Wait for the process to end; its exit code."""
        code = self.process.wait(timeout=timeout)
        self._reader.join(timeout=10)
        return code

    def close(self) -> None:
        """Kill the process if it still runs, and release the pty."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)
        self._reader.join(timeout=10)
        os.close(self._leader)
