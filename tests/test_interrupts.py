"""`PauseOnSignals`: real signals sent to this process (SIGTERM, which reads the flow run's state
from a server, is tested end to end in tests/e2e/test_interrupts.py)."""

from __future__ import annotations

import os
import signal
import threading
import time
from uuid import uuid4

import pytest

from prefect_intermission.interrupts import PauseOnSignals, StopNow
from prefect_intermission.pause_signals import PauseSignal


def test_the_first_ctrl_c_requests_a_pause_and_the_second_stops_at_once():
    pause = PauseSignal()
    before = (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))
    with pytest.raises(StopNow), PauseOnSignals(pause, uuid4()):
        os.kill(os.getpid(), signal.SIGINT)
        assert pause.wait(10), "the first Ctrl+C requested no pause"
        assert pause.reason == "signal"
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(10)  # the second Ctrl+C interrupts this
        pytest.fail("the second Ctrl+C did not stop at once")
    # While the study saves what it can and exits, a third Ctrl+C must not cut that short.
    assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    assert signal.getsignal(signal.SIGTERM) == before[1]
    signal.signal(signal.SIGINT, before[0])


def test_handlers_are_restored_after_a_study_that_was_not_interrupted():
    before = (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))
    pause = PauseSignal()
    with PauseOnSignals(pause, uuid4()):
        assert signal.getsignal(signal.SIGINT) not in before
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
    assert not pause.is_requested()


def test_off_the_main_thread_nothing_is_installed():
    seen: list[object] = []

    def in_a_thread() -> None:
        with PauseOnSignals(PauseSignal(), uuid4()) as handlers:
            seen.extend([handlers.enabled, signal.getsignal(signal.SIGINT)])

    thread = threading.Thread(target=in_a_thread)
    thread.start()
    thread.join()
    assert seen == [False, signal.getsignal(signal.SIGINT)]
