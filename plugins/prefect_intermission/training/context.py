"""What an objective needs from the study, whatever trains it: the seam under every integration.

`TrialLoop` is one way to train with it (a loop written by hand); the Lightning and
Transformers integrations are others. Each reads the trial, asks whether to pause,
reports to Optuna and checkpoints through the trial's verified store, from here.
"""

from __future__ import annotations

import logging
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import optuna

from prefect_intermission._optuna_internals import trial_id_of
from prefect_intermission.settings import settings
from prefect_intermission.training.checkpoints import LoadResult, TrialCheckpoints
from prefect_intermission.training.direction import Direction
from prefect_intermission.training.pause_signal import PauseSignal


@dataclass(frozen=True)
class TrialContext:
    """One trial as the study hands it to the training code.

    Attributes:
        trial: The Optuna trial (its parameters, `report`, `should_prune`).
        checkpoints: The trial's checkpoints, verified against their manifest.
        seed: The trial's seed (the study seed and the trial number fix it).
        max_epochs: Epochs the trial trains at most.
        direction: How the tracked metric compares (the first objective's direction).
        pause_signal: Set when the study pauses; None outside a study run.
        objective_params: The study's settings for the objective.
        logger: Where the trial's lines go (the run's log in a study run).
        background_checkpoints: Whether `store` writes in a thread of its own (the
            `INTERMISSION_BACKGROUND_CHECKPOINTS` setting when not given).
    """

    trial: optuna.Trial
    checkpoints: TrialCheckpoints
    seed: int
    max_epochs: int
    direction: Direction = "minimize"
    pause_signal: PauseSignal | None = None
    objective_params: dict[str, Any] = field(default_factory=dict)
    logger: logging.Logger | logging.LoggerAdapter[logging.Logger] = field(
        default_factory=lambda: logging.getLogger("prefect_intermission.training")
    )
    background_checkpoints: bool = field(default_factory=lambda: settings().background_checkpoints)

    @property
    def several_objectives(self) -> bool:
        """Whether the study has several objectives (Optuna then neither takes reports nor prunes)."""
        return len(self.trial.study.directions) > 1

    def should_pause(self) -> bool:
        """Whether the study asked this trial to stop at its next boundary."""
        return self.pause_signal is not None and self.pause_signal.pauses(self.trial.number)

    def report(self, value: float, step: int) -> None:
        """Report an intermediate value to Optuna (recorded as it is with several objectives)."""
        if self.several_objectives:  # Optuna's report() refuses these; the value is still recorded
            self.trial.storage.set_trial_intermediate_value(trial_id_of(self.trial), step, value)
        else:
            self.trial.report(value, step)

    @property
    def stored(self) -> str:
        """How a log line says where a checkpoint just taken is: "being stored" or "stored"."""
        return "being stored" if self.background_checkpoints else "stored"

    def store(self, epoch: int, state: dict[str, Any], *, last_epoch: int, best: bool = False, mid_epoch: bool = False) -> str:
        """Checkpoint `state` under `epoch` (see `TrialCheckpoints.save`); its path.

        With `background_checkpoints`, only a copy is taken here and a writer thread stores
        it; either way a study stopped at once waits until it is stored (the pause
        signal's `recording`, `last_epoch` being the last finished epoch).
        """
        signal = self.pause_signal
        recording = signal.recording(self.trial.number, last_epoch) if signal is not None else nullcontext()
        if self.background_checkpoints:
            return self.checkpoints.save_in_background(epoch, state, best=best, mid_epoch=mid_epoch, held=recording)
        with recording:
            return self.checkpoints.save(epoch, state, best=best, mid_epoch=mid_epoch)

    def should_prune(self) -> bool:
        """Whether the pruner stops the trial now (never with several objectives)."""
        return not self.several_objectives and self.trial.should_prune()

    def reported_steps(self) -> set[int]:
        """The steps already reported to Optuna by earlier attempts of this trial."""
        return set(self.trial.storage.get_trial(trial_id_of(self.trial)).intermediate_values)

    def load_latest(self, reported: set[int]) -> LoadResult:
        """The trial's latest valid checkpoint, verified. Damaged newer ones are skipped, and a
        trial that reported epochs (`reported`) but has no valid checkpoint trains again from
        its start: both are said on the trial's log."""
        number = self.trial.number
        loaded = self.checkpoints.load_latest_valid()
        for fallback in loaded.fallbacks:
            self.logger.warning(
                "Trial %d: skipping checkpoint of epoch %s: %s", number, fallback["epoch"], fallback["problem"]
            )
        if loaded.state is None and reported:
            self.logger.warning(
                "Trial %d has no valid checkpoint: training again from the start with the same parameters.", number
            )
        return loaded
