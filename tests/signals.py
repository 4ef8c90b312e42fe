"""Pause signals for tests that drive a trial loop directly."""

from __future__ import annotations

from prefect_intermission.training.pause_signal import PauseSignal


class PauseAfter(PauseSignal):
    """A pause signal that turns on after `n` epoch boundaries were checked."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.remaining = n

    def is_requested(self) -> bool:
        self.remaining -= 1
        return self.remaining < 0
