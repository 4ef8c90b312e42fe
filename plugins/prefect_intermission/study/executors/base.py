"""The interface between the scheduler, which decides which trials train, and where they train."""

from __future__ import annotations

from abc import ABC, abstractmethod

import optuna

from prefect_intermission.study.attempt import TrialOutcome


class TrialExecutor(ABC):
    """Trains trial attempts somewhere and reports how each one ended.

    The scheduler starts attempts with `start`, collects their outcomes with `wait`,
    and tells the executor when the study pauses. Counting outcomes, asking new
    trials and holding trials aside are the scheduler's; an executor only trains.
    """

    #: Whether trials train in this process: then a second Ctrl+C stops them at once, pause
    #: rules are checked here, and a trial held on its own (`intermission pause RUN --trial N`)
    #: waits aside while the others go on. Elsewhere, their own runs do those things.
    trains_here: bool = True

    def __enter__(self) -> TrialExecutor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Let go of what training needed (clients, connections)."""

    @abstractmethod
    def start(self, trial: optuna.Trial) -> None:
        """Start training `trial` (one that was trained before picks up from its checkpoint)."""

    @abstractmethod
    def running(self) -> list[int]:
        """The trials whose attempts started and were not collected yet."""

    @abstractmethod
    def wait(self, timeout: float) -> list[TrialOutcome]:
        """The outcomes of attempts that ended, waiting up to `timeout` seconds for one."""

    def pausing(self) -> None:
        """The study pauses: tell the trials being trained (by default they read the signal)."""

    @abstractmethod
    def stop_now(self) -> dict[int, int | None]:
        """After a second Ctrl+C: the trials being trained, marked where they continue from."""
