"""What `intermission status` reports: the `StudyStatus` of a study and its unfinished trials."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class TrialProgress:
    """One unfinished trial: how far it trained and its last metric.

    Attributes:
        status: "running" (an execution trains it now), "paused", or "interrupted"
            (its execution stopped without pausing it, e.g. a crash).
        epochs_done: Epochs reported to Optuna; training continues with epoch `epochs_done`.
        paused_after_epoch: The epoch it paused after (0-based), when paused.
        paused_steps_into_epoch: Steps of the next epoch it trained before pausing within
            it (`pause_granularity="step"`), else None.
    """

    number: int
    status: str
    epochs_done: int
    max_epochs: int
    last_metric: float | None
    paused_after_epoch: int | None
    paused_steps_into_epoch: int | None
    params: dict[str, Any]


@dataclass(frozen=True)
class StudyStatus:
    """Everything `intermission status` shows about one study.

    Times are ISO 8601 strings in UTC; durations are seconds. A field is None when the
    stored data does not say (e.g. no completed trial yet: no best value).
    """

    study_name: str
    state: str
    prefect_state: str | None
    flow_run_id: str | None
    ui_url: str | None
    storage: str
    n_trials: int
    max_epochs: int
    seed: int | None  # the study's, recorded when it was created (drawn when none was given)
    trials: dict[str, int]
    unfinished: list[TrialProgress]
    best_value: float | None
    best_params: dict[str, Any] | None
    best_trial: int | None
    pareto_front: list[dict[str, Any]] | None  # several objectives: each best trial's number, values, params
    started_at: str | None
    training_seconds: float
    training_in_progress_seconds: float
    measured_epochs: int
    mean_epoch_seconds: float | None
    epochs_left: int
    estimated_remaining_seconds: float | None
    last_pause: dict[str, Any] | None
    pauses: list[dict[str, Any]]
    resumptions: list[dict[str, Any]]
    resumes_at: str | None
    checkpoints: str | None
    checkpoint_files: int
    checkpoint_bytes: int
    problems: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The status as plain JSON-ready data."""
        return asdict(self)
