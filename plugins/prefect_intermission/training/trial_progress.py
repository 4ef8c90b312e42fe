"""One record of a trial's progress, whatever trains it (`TrialLoop`, Lightning, a `Trainer`).

It counts the finished epochs with their metric and time, the best metric, the early-stopping
count, and the epochs earlier attempts already reported to Optuna. It goes into every
checkpoint (`state_dict`) and comes back from it (`load_state_dict`), and it writes the lines
a user reads about the trial's epochs and its continuation, the same for every trainer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from prefect_intermission._counting import epochs_done, position_text
from prefect_intermission.training.direction import Direction, is_better

#: The keys `state_dict` writes into a checkpoint (the trainer adds its own beside them).
STATE_KEYS = ("best_metric", "last_metric", "epochs_without_improvement", "stopped_early", "epoch_seconds")


@dataclass
class TrialProgress:
    """A trial's progress through its epochs.

    Attributes:
        trial_number: The trial's number.
        max_epochs: Epochs the trial trains at most.
        direction: How metrics compare.
        patience: Epochs in a row without a better metric after which the trial stops early.
        epoch: The last finished epoch (-1 before the first).
        best_metric: The best epoch metric so far, or None.
        last_metric: The last finished epoch's metric, or None.
        epochs_without_improvement: The early-stopping count.
        stopped_early: Whether `patience` ended the training.
        epoch_seconds: How long each finished epoch took to train.
        reported: The epochs already reported to Optuna (by earlier attempts, then this one).
        resumed_from_epoch: The last finished epoch of the checkpoint this attempt continued
            from, or None when it started afresh.
    """

    trial_number: int
    max_epochs: int
    direction: Direction = "minimize"
    patience: int | None = None
    epoch: int = -1
    best_metric: float | None = None
    last_metric: float | None = None
    epochs_without_improvement: int = 0
    stopped_early: bool = False
    epoch_seconds: list[float] = field(default_factory=list)
    reported: set[int] = field(default_factory=set)
    resumed_from_epoch: int | None = None

    def needs_report(self, epoch: int) -> bool:
        """Whether `epoch` is still to be reported (one trained again after a crash keeps its report)."""
        return epoch not in self.reported

    def finish_epoch(self, epoch: int, metric: float | None, seconds: float) -> bool:
        """Count `epoch` finished with `metric` (None: not logged) after `seconds` of training;
        whether its metric is the best so far."""
        self.epoch, self.last_metric = epoch, metric
        self.epoch_seconds.append(round(seconds, 4))
        if metric is None:
            return False
        self.reported.add(epoch)
        improved = is_better(metric, self.best_metric, self.direction)
        if improved:
            self.best_metric = metric
            self.epochs_without_improvement = 0
        else:
            self.epochs_without_improvement += 1
        if self.patience is not None and self.epochs_without_improvement >= self.patience:
            self.stopped_early = True
        return improved

    def lost_epochs(self) -> list[int]:
        """The epochs reported by earlier attempts but not in the checkpoint continued from
        (trained again: a crash lost them)."""
        last = -1 if self.resumed_from_epoch is None else self.resumed_from_epoch
        return sorted(e for e in self.reported if e > last)

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint holds of the progress (`STATE_KEYS`), beside the trainer's own epoch."""
        return {
            "best_metric": self.best_metric,
            "last_metric": self.last_metric,
            "epochs_without_improvement": self.epochs_without_improvement,
            "stopped_early": self.stopped_early,
            "epoch_seconds": list(self.epoch_seconds),
        }

    def load_state_dict(self, state: dict[str, Any], *, epoch: int) -> None:
        """Take the progress back from a checkpoint whose last finished epoch is `epoch`."""
        self.epoch = epoch
        self.best_metric, self.last_metric = state["best_metric"], state["last_metric"]
        self.epochs_without_improvement = state["epochs_without_improvement"]
        self.stopped_early = state.get("stopped_early", False)  # not in Lightning's before 0.3
        self.epoch_seconds = list(state["epoch_seconds"])
        self.resumed_from_epoch = epoch

    def epoch_line(self, stored: str, *, metric_name: str = "metric") -> str:
        """The log line of a finished epoch: "Trial 0 finished epoch 2 of 6: metric 0.41
        (best 0.39); checkpoint stored." (`stored`: "stored" or "being stored")."""
        return (
            f"Trial {self.trial_number} finished epoch {epochs_done(self.epoch)} of {self.max_epochs}: "
            f"{metric_name} {_number(self.last_metric)} (best {_number(self.best_metric)}); checkpoint {stored}."
        )

    def continues_line(self, steps_into_epoch: int | None = None) -> str:
        """The log line of a trial continued from its checkpoint: "Trial 0 continues from its
        checkpoint: 2 of 6 epochs done, and 5 steps into epoch 3."."""
        return (
            f"Trial {self.trial_number} continues from its checkpoint: "
            f"{position_text(self.epoch, self.max_epochs, steps_into_epoch)}."
        )

    def stopped_early_line(self) -> str:
        """The log line of a trial that `patience` stopped."""
        return (
            f"Trial {self.trial_number} stops early: {self.epochs_without_improvement} epochs in a row "
            "without a better metric."
        )


class ProgressView:
    """Read-only properties over `self.progress`, for the classes that keep a trial's record."""

    progress: TrialProgress

    @property
    def epoch(self) -> int:
        """The last finished epoch (-1 before the first)."""
        return self.progress.epoch

    @property
    def best_metric(self) -> float | None:
        """The best epoch metric so far, or None."""
        return self.progress.best_metric

    @property
    def last_metric(self) -> float | None:
        """The metric of the last finished epoch, or None."""
        return self.progress.last_metric

    @property
    def epochs_without_improvement(self) -> int:
        """The early-stopping count."""
        return self.progress.epochs_without_improvement

    @property
    def stopped_early(self) -> bool:
        """Whether the study's `patience` ended the training."""
        return self.progress.stopped_early

    @property
    def epoch_seconds(self) -> list[float]:
        """Wall time of each finished epoch (time spent paused is not counted)."""
        return self.progress.epoch_seconds

    @property
    def resumed_from_epoch(self) -> int | None:
        """The checkpointed epoch training continued after, or None."""
        return self.progress.resumed_from_epoch


def _number(value: float | None) -> str:
    return "nan" if value is None else f"{value:.6g}"
