"""Which thread writes each checkpoint: the training thread, or a background writer."""

from __future__ import annotations

import threading

import pytest

from prefect_intermission.training.checkpoints import TrialCheckpoints


def writer_threads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the threads that write each checkpoint from now on, in order."""
    names: list[str] = []
    write = TrialCheckpoints._write

    def recorded(self: TrialCheckpoints, *args: object, **kwargs: object) -> str:
        names.append(threading.current_thread().name)
        return write(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(TrialCheckpoints, "_write", recorded)
    return names
