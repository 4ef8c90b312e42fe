"""`PauseOnSignals`: real signals sent to this process (SIGTERM, which reads the flow run's state
from a server, is tested end to end in tests/e2e/test_interrupts.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from uuid import uuid4

import pytest
from prefect_intermission.pausing.interrupts import PauseOnSignals, StopNow
from prefect_intermission.training.pause_signal import PauseSignal


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


_LOADER_SCRIPT = textwrap.dedent("""
    import os, signal, time, torch
    from torch.utils.data import DataLoader, Dataset
    from prefect_intermission import TrialLoop

    class Slow(Dataset):
        def __len__(self):
            return 40

        def __getitem__(self, i):
            time.sleep(0.05)
            return torch.tensor([float(i)])

    if __name__ == "__main__":
        pauses = []
        signal.signal(signal.SIGINT, lambda *_: pauses.append("pause"))  # as the study does
        loader = DataLoader(Slow(), batch_size=2, num_workers=2, multiprocessing_context="spawn",
                            worker_init_fn=TrialLoop.worker_init_fn)
        seen = 0
        for i, batch in enumerate(loader):
            if i == 3:
                os.killpg(0, signal.SIGINT)  # Ctrl+C: the terminal signals the whole group
            seen += len(batch)
        print(seen, pauses)
""")


def test_data_loading_workers_leave_ctrl_c_to_the_study(tmp_path):
    script = tmp_path / "loader.py"
    script.write_text(_LOADER_SCRIPT)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=50,
                          start_new_session=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["40", "['pause']"], "the epoch's data was cut short"
