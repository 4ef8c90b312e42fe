"""The pause signal, the pause file's trigger, and trial holds: what a study reads at each epoch boundary."""

from __future__ import annotations

import os
import sys
import threading
import time

import pytest
from prefect_intermission.flows._how_to_continue import (
    continue_instruction as _continue_instruction,
)
from prefect_intermission.pausing.holds import TrialHolds
from prefect_intermission.pausing.notices import PauseNotices
from prefect_intermission.pausing.triggers import pause_file_trigger
from prefect_intermission.training.pause_signal import PauseSignal, StudyStopped
from sqlalchemy import create_engine


def test_a_pause_file_left_from_an_earlier_pause_waits_until_it_is_touched_or_created_again(tmp_path):
    path = tmp_path / "pause-now"
    path.touch()
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    trigger = pause_file_trigger(str(path))
    assert trigger() is None  # there when the study started: ignored
    os.utime(path, ns=(2_000_000_000, 2_000_000_000))  # touched
    assert trigger() == "file"
    path.unlink()
    assert trigger() is None
    path.touch()  # created again
    assert trigger() == "file"


def test_a_new_pause_file_pauses(tmp_path):
    path = tmp_path / "pause-now"
    trigger = pause_file_trigger(str(path))
    assert trigger() is None
    path.touch()
    assert trigger() == "file"


def test_held_trials_pause_alone_and_every_reason_is_kept():
    signal = PauseSignal()
    signal.set_held({3})
    assert signal.pauses(3) and not signal.pauses(4) and not signal.is_requested()
    signal.request("file")
    signal.request("signal")
    assert signal.pauses(4) and signal.reason == "file" and signal.reasons == ["file", "signal"]
    signal.clear()
    assert not signal.pauses(4) and signal.reasons == [] and signal.pauses(3)


def test_stopping_at_once_waits_for_an_epoch_being_stored_and_refuses_the_next():
    signal = PauseSignal()
    stored = []

    def record_slowly():
        with signal.recording(0, 4):
            time.sleep(0.3)
            stored.append(5)

    writer = threading.Thread(target=record_slowly)
    writer.start()
    time.sleep(0.05)
    signal.stop_recording()
    assert stored == [5]  # the epoch being stored was finished before the stop returned
    with pytest.raises(StudyStopped):
        with signal.recording(1, 2):
            stored.append("never")
    writer.join()
    assert stored == [5]


def test_trial_holds_are_kept_per_study(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path}/studies.db")
    mine, other = TrialHolds(engine, "mine"), TrialHolds(engine, "other")
    assert mine.hold(2) and not mine.hold(2)
    assert other.hold(5)
    assert mine.held() == {2} and other.held() == {5}
    assert mine.release(2) and not mine.release(2)
    mine.hold(1), mine.hold(3)
    assert mine.release_all() == {1, 3} and mine.held() == set() and other.held() == {5}


def test_a_pause_notice_stops_only_the_execution_it_names_and_keeps_its_first_reason(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path}/studies.db")
    notices, other_study = PauseNotices(engine, "mine"), PauseNotices(engine, "other")
    assert notices.reason_for("execution-1") is None
    notices.post("execution-1", "ui")
    notices.post("execution-1", "file")  # a second reason of the same pause
    assert notices.reason_for("execution-1") == "ui"
    assert notices.reason_for("execution-2") is None  # the resumed study is not stopped by it
    assert other_study.reason_for("execution-1") is None
    notices.post("execution-2", "cli")
    assert (notices.reason_for("execution-2"), notices.reason_for("execution-1")) == ("cli", None)


def test_the_continue_command_never_shows_a_password(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["train.py", "--storage", "postgresql+psycopg://bob:s3cret@db/optuna"])
    shown = _continue_instruction("search")
    assert "s3cret" not in shown
    assert "postgresql+psycopg://bob:***@db/optuna" in shown


def test_the_continue_command_masks_tokens_keys_and_password_query_values(monkeypatch):
    monkeypatch.setattr(sys, "argv", [
        "train.py", "--hf-token", "hf_abc123", "--api-key=k-999", "--epochs", "5",
        "--storage", "postgresql+psycopg://bob@db/optuna?sslmode=require&password=pw-777",
    ])
    shown = _continue_instruction("search")
    for secret in ("hf_abc123", "k-999", "pw-777"):
        assert secret not in shown
    assert "--hf-token '***'" in shown and "'--api-key=***'" in shown and "--epochs 5" in shown
    assert "sslmode=require&password=***" in shown
