"""A study's training time, counted across executions (time spent paused is not counted).

`timeout` is measured on it: once spent, no new trial starts and the study completes
with what it has, as `study.optimize(timeout=...)` does. It is kept in the study, so a
resumed run goes on counting where the paused one stopped. Each execution counts from
its first trial's start: a run's set-up (imports, loading the study) is not training.
"""

from __future__ import annotations

import time

from prefect_intermission.study.state import StudyState


class TrainingClock:
    """The study's training time: what earlier executions recorded plus this one's."""

    def __init__(self, state: StudyState, *, timeout: float | None = None) -> None:
        self.state = state
        self.timeout = timeout
        self._before = state.trained_seconds()
        self._started: float | None = None

    def start(self) -> None:
        """A trial starts: this execution's training time counts from its first call."""
        if self._started is None:
            self._started = time.monotonic()

    def seconds(self) -> float:
        """Training time so far, this execution included."""
        return self._before + (0.0 if self._started is None else time.monotonic() - self._started)

    def out_of_time(self) -> bool:
        """Whether `timeout` is spent (never, without one)."""
        return self.timeout is not None and self.seconds() >= self.timeout

    def save(self) -> None:
        """Record the training time so far with the study."""
        self.state.record_trained_seconds(self.seconds())
