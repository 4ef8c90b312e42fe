"""Exceptions raised by prefect-intermission.

Every error the plugin raises on purpose derives from `IntermissionError`, and its
message says what is wrong and how to fix it.
"""

from __future__ import annotations

from prefect_intermission._counting import position_text


class IntermissionError(Exception):
    """Base class of every error raised by prefect-intermission."""


class ConfigurationError(IntermissionError, ValueError):
    """A parameter or setting is invalid; raised before any work starts."""


class ObjectiveImportError(IntermissionError):
    """The objective's import path does not name an importable callable."""


class CheckpointError(IntermissionError):
    """A checkpoint cannot be written, read or applied to the model."""


class MetricNotFinite(IntermissionError):
    """An epoch's metric was NaN or infinite: the trial fails (as Optuna fails it), the study goes on."""


class FlowRunControlError(IntermissionError):
    """A pause or resume request cannot be applied to the given flow run."""


class TrialPaused(BaseException):
    """Raised inside an objective at a boundary when a pause was requested.

    It derives from `BaseException` (like `KeyboardInterrupt`) so that an objective's
    own `except Exception:` blocks do not swallow it. The trial's checkpoint is already
    stored when it is raised: after `epoch` (the last finished one, -1 before the
    first), plus `steps_into_epoch` steps of the next one when it paused within it.
    """

    def __init__(self, trial_number: int, epoch: int, *, steps_into_epoch: int | None = None) -> None:
        super().__init__(f"Trial {trial_number} paused: {position_text(epoch, steps_into_epoch=steps_into_epoch)}.")
        self.trial_number = trial_number
        self.epoch = epoch
        self.steps_into_epoch = steps_into_epoch
