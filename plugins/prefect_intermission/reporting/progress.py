"""What a study's trials are doing right now, fed by epoch boundaries and trial ends.

Observers (the artifact reporter, the terminal display) are told of every change; they
must return at once, since they are called on the training threads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class TrialProgress:
    """One trial as the study sees it."""

    number: int
    state: str  # running, paused, complete, pruned, failed
    epoch: int  # last finished epoch, -1 before the first
    last_metric: float | None = None
    best_metric: float | None = None
    params: dict[str, Any] = field(default_factory=dict)


class StudyProgress:
    """Thread-safe progress of one study in this execution."""

    def __init__(self, study_name: str, *, n_trials: int, max_epochs: int, finished: int) -> None:
        self.study_name = study_name
        self.n_trials = n_trials
        self.max_epochs = max_epochs
        self._finished = finished
        self._trials: dict[int, TrialProgress] = {}
        self._lock = threading.Lock()
        self._listeners: list[Callable[[StudyProgress], None]] = []
        self._epoch_hooks: list[Callable[[int, int, float, float | None], None]] = []

    def add_listener(self, listener: Callable[[StudyProgress], None]) -> None:
        """Call `listener(self)` after every change."""
        self._listeners.append(listener)

    @property
    def finished(self) -> int:
        """Trials complete or pruned, counting earlier runs."""
        return self._finished

    def trials(self) -> list[TrialProgress]:
        """The trials this execution has trained, by number."""
        with self._lock:
            return [self._trials[n] for n in sorted(self._trials)]

    def best_metric(self, number: int) -> float | None:
        """A trial's best metric as last reported (restored from its checkpoint on a resume)."""
        with self._lock:
            trial = self._trials.get(number)
        return trial.best_metric if trial is not None else None

    def trial_started(self, number: int, params: dict[str, Any], epoch: int, best: float | None) -> None:
        """A trial starts training (or continues after `epoch`)."""
        self._update(number, TrialProgress(number, "running", epoch, best_metric=best, params=dict(params)))

    def add_epoch_hook(self, hook: Callable[[int, int, float, float | None], None]) -> None:
        """Call `hook(number, epoch, metric, best)` at every epoch boundary, on the trial's thread."""
        self._epoch_hooks.append(hook)

    def epoch_finished(self, number: int, epoch: int, metric: float, best: float | None) -> None:
        """A trial finished `epoch` with `metric` and stored its checkpoint."""
        for hook in self._epoch_hooks:
            hook(number, epoch, metric, best)
        with self._lock:
            current = self._trials.get(number) or TrialProgress(number, "running", -1)
        self._update(number, replace(current, epoch=epoch, last_metric=metric, best_metric=best))

    def trial_ended(self, number: int, state: str) -> None:
        """A trial stopped: complete, pruned, failed or paused."""
        with self._lock:
            current = self._trials.get(number) or TrialProgress(number, state, -1)
            if state in ("complete", "pruned"):
                self._finished += 1
        self._update(number, replace(current, state=state))

    def _update(self, number: int, trial: TrialProgress) -> None:
        with self._lock:
            self._trials[number] = trial
        for listener in self._listeners:
            listener(self)
