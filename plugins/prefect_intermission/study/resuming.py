"""Resuming a study: what a new execution of its run continues, and how.

- `check_checkpoints`: before any work, the unfinished trials' checkpoints are there and
  readable, or the execution stops with nothing changed.
- `continuation`: which trials the execution continues, and the line that says so.
- `reattach_trial`: a live `Trial` for a trial left RUNNING by an earlier execution.
- `record_resumption`: a continued trial's record: after a pause or a crash, from which
  epoch, and what it lost.

Within a trial, the restore itself (model, optimizer, generators, data position) is the
training loop's (`training.loop.TrialLoop`), from the newest valid checkpoint
(`training.checkpoints.TrialCheckpoints.load_latest_valid`).
"""

from __future__ import annotations

from dataclasses import dataclass

import optuna
from optuna.trial import FrozenTrial

from prefect_intermission._optuna_internals import trial_id_of
from prefect_intermission.errors import CheckpointError
from prefect_intermission.study.state import TRIAL_PAUSED_EPOCH_ATTR, StudyState
from prefect_intermission.training.loop import Restore
from prefect_intermission.training.store import CheckpointStore


def check_checkpoints(state: StudyState, checkpoints: CheckpointStore, *, restart_trials_without_checkpoints: bool) -> None:
    """Fail before any work if unfinished trials' checkpoints are gone or of another format.

    A trial paused after an epoch, or cut off after two or more epochs, must have
    checkpoints; if its folder is gone (deleted, or `checkpoints` points elsewhere)
    continuing it would silently retrain it, unless `restart_trials_without_checkpoints`.
    """
    study_name = state.study.study_name
    missing = []
    for trial in state.unfinished_trials():
        paused_epoch = trial.system_attrs.get(TRIAL_PAUSED_EPOCH_ATTR)
        had_checkpoint = paused_epoch is not None or len(trial.intermediate_values) >= 2
        stored = checkpoints.for_trial(study_name, trial.number)
        stored.check_format()
        if had_checkpoint and not stored.exists():
            missing.append(f"#{trial.number} ({len(trial.intermediate_values)} epochs trained)")
    if missing and not restart_trials_without_checkpoints:
        raise CheckpointError(
            f"The checkpoints of trial(s) {', '.join(missing)} of study {study_name!r} are "
            f"missing from {checkpoints.study_folder(study_name)!r}: they were "
            "deleted, or `checkpoints` points elsewhere than when they were written. "
            "Nothing was changed. Point `checkpoints` at the right location, or run again "
            "with restart_trials_without_checkpoints=True to train those trials again from "
            "the start with the same parameters."
        )


@dataclass(frozen=True)
class Continuation:
    """What an execution of a study's run continues: its unfinished trials."""

    study_name: str
    finished: int
    n_trials: int
    unfinished: list[FrozenTrial]

    @property
    def anything(self) -> bool:
        """Whether an earlier execution trained anything (a new study continues nothing)."""
        return bool(self.unfinished or self.finished)

    @property
    def trials_text(self) -> str:
        """The unfinished trials with their epochs done, e.g. "#0 (2 epochs done), #3 (...)"."""
        return ", ".join(f"#{t.number} ({len(t.intermediate_values)} epochs done)" for t in self.unfinished) or "none"

    def log_line(self) -> str:
        """The run's log line that says what this execution continues."""
        return (
            f"Continuing study {self.study_name!r}: {self.finished}/{self.n_trials} trials finished, "
            f"{len(self.unfinished)} unfinished trial(s) to continue: {self.trials_text}."
        )


def continuation(state: StudyState, n_trials: int) -> Continuation:
    """The trials an execution of the study's run continues."""
    return Continuation(state.study.study_name, state.finished_count(), n_trials, state.unfinished_trials())


def reattach_trial(state: StudyState, trial_id: int) -> optuna.Trial:
    """A live `Trial` for a RUNNING trial left by an earlier run.

    Its parameters come back from storage without drawing from the sampler (Optuna
    samples only parameters a trial does not have yet), so the study's suggestion
    sequence goes on as if the run had never stopped.
    """
    return optuna.Trial(state.study, trial_id)


def record_resumption(state: StudyState, trial: optuna.Trial, earlier: str, restore: Restore) -> None:
    """Record that `trial` continues after a pause (`earlier == "paused"`) or a crash, with
    the epoch it continues from and what it lost."""
    state.record_resumption(
        trial_id_of(trial),
        {
            "reason": "pause" if earlier == "paused" else "crash",
            "from_epoch": restore.from_epoch,
            "lost_epochs": restore.lost_epochs,
            "fallbacks": restore.fallbacks,
        },
    )
