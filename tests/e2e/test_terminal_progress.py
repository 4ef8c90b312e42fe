"""A study run from a terminal draws live progress; piped to a file it prints plain log lines."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
import uuid
from pathlib import Path


from deployments.local_stack import PROJECT_ROOT

SCRIPT = Path(__file__).with_name("run_study_script.py")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _command(tmp_path, name):
    return [sys.executable, str(SCRIPT), name, f"sqlite:///{tmp_path}/studies.db", str(tmp_path / "ckpt")]


def test_in_a_terminal_the_study_shows_live_bars(prefect_stack, tmp_path):
    name = f"tty-{uuid.uuid4().hex[:6]}"
    env = {**prefect_stack.env, "INTERMISSION_TEST_EPOCH_SECONDS": "0.05", "COLUMNS": "120"}
    leader, follower = pty.openpty()
    process = subprocess.Popen(_command(tmp_path, name), env=env, cwd=PROJECT_ROOT,
                               stdin=follower, stdout=follower, stderr=follower)
    os.close(follower)
    output = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the other side closed: the process ended
            break
        if not chunk:
            break
        output += chunk
    process.wait(timeout=120)
    os.close(leader)
    screen = ANSI.sub("", output.decode(errors="replace"))
    assert process.returncode == 0, screen[-2000:]
    assert f"study {name}" in screen
    assert re.search(r"2/2\s+trials finished", screen), screen[-2000:]
    assert re.search(r"trial 1\s.*━.*12/12 complete", screen), screen[-2000:]


def test_piped_output_has_plain_epoch_lines_and_no_bars(prefect_stack, tmp_path):
    name = f"piped-{uuid.uuid4().hex[:6]}"
    env = {**prefect_stack.env, "INTERMISSION_TEST_EPOCH_SECONDS": "0.05"}
    done = subprocess.run(_command(tmp_path, name), env=env, cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    output = done.stdout + done.stderr
    assert "━" not in output
    assert "Trial 1 finished epoch 12 of 12" in output
