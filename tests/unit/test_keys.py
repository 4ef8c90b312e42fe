"""`PauseKeys` on a real pseudo-terminal: keys pause, the terminal is given back as it was."""

from __future__ import annotations

import io
import os
import pty
import termios

import pytest
from prefect_intermission.pausing.keys import HINT, PauseKeys
from prefect_intermission.training.pause_signal import PauseSignal


@pytest.fixture
def terminal():
    """(keyboard, stdin): bytes written to `keyboard` are typed on `stdin`, a tty."""
    leader, follower = pty.openpty()
    stdin = os.fdopen(follower, "r", closefd=True)
    yield leader, stdin
    stdin.close()
    os.close(leader)


@pytest.mark.parametrize("key", [b"p", b"q"])
def test_a_key_requests_a_pause_and_the_terminal_is_restored(terminal, key):
    keyboard, stdin = terminal
    before = termios.tcgetattr(stdin.fileno())
    out = io.StringIO()
    pause = PauseSignal()
    with PauseKeys(pause, stdin=stdin, out=out) as keys:
        assert keys.enabled
        mode = termios.tcgetattr(stdin.fileno())
        assert not mode[3] & (termios.ICANON | termios.ECHO), "not in cbreak mode"
        assert mode[3] & termios.ISIG, "Ctrl+C must still interrupt"
        os.write(keyboard, b"x" + key)
        assert pause.wait(10)
    assert pause.reason == "key"
    assert out.getvalue() == HINT + "\n"
    assert termios.tcgetattr(stdin.fileno()) == before


def test_other_keys_do_nothing_and_an_error_still_restores_the_terminal(terminal):
    keyboard, stdin = terminal
    before = termios.tcgetattr(stdin.fileno())
    pause = PauseSignal()
    with pytest.raises(RuntimeError), PauseKeys(pause, stdin=stdin, out=io.StringIO()):
        # Keypad 0 and 1 in application mode send ESC O p and ESC O q; F1 is ESC O P.
        for typed in (b"a ", b"\x1bOp", b"\x1bOq", b"\x1bOP", b"P"):
            os.write(keyboard, typed)
            assert not pause.wait(0.3), f"{typed!r} paused the study"
        raise RuntimeError("the study failed")
    assert termios.tcgetattr(stdin.fileno()) == before


def test_without_a_terminal_nothing_is_read_or_printed():
    read_end, write_end = os.pipe()
    with os.fdopen(read_end) as stdin, os.fdopen(write_end, "w") as keyboard:
        keyboard.write("p")
        keyboard.flush()
        out = io.StringIO()
        pause = PauseSignal()
        with PauseKeys(pause, stdin=stdin, out=out) as keys:
            assert not keys.enabled
            assert not pause.wait(1)
        assert out.getvalue() == ""
        assert stdin.read(1) == "p", "input that was not ours was consumed"
