"""prefect-intermission: pausable Optuna studies on Prefect.

A pause stops every trial at its next boundary after its checkpoint and the
study's state are stored, then suspends the flow run; a resume continues every
trial from exactly where it stopped.

The public names below load on first use, as Optuna's do: `import
prefect_intermission` imports neither PyTorch nor Optuna nor the flows.
"""

from __future__ import annotations

from importlib import metadata as _metadata
from typing import TYPE_CHECKING

from prefect_intermission._imports import lazy_attributes

try:
    __version__ = _metadata.version("prefect-intermission")
except _metadata.PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"

if TYPE_CHECKING:
    from prefect_intermission.blocks.credentials import CheckpointStorageCredentials
    from prefect_intermission.blocks.pause_policy import PausePolicy
    from prefect_intermission.control.run_control import request_pause, request_resume
    from prefect_intermission.errors import (
        CheckpointError,
        ConfigurationError,
        FlowRunControlError,
        IntermissionError,
        ObjectiveImportError,
        TrialPaused,
    )
    from prefect_intermission.flows.study import optimize_study
    from prefect_intermission.study.config import (
        BudgetSettings,
        CheckpointSettings,
        ExecutionSettings,
        PausingSettings,
        SearchSettings,
    )
    from prefect_intermission.training.loop import TrialLoop
    from prefect_intermission.training.pause_signal import PauseSignal
    from prefect_intermission.training.store import CheckpointStore
    from prefect_intermission.training.trial_settings import TrainingSettings

__getattr__, __dir__ = lazy_attributes(
    __name__,
    {
        "BudgetSettings": "prefect_intermission.study.config",
        "CheckpointError": "prefect_intermission.errors",
        "CheckpointSettings": "prefect_intermission.study.config",
        "CheckpointStorageCredentials": "prefect_intermission.blocks.credentials",
        "CheckpointStore": "prefect_intermission.training.store",
        "ConfigurationError": "prefect_intermission.errors",
        "ExecutionSettings": "prefect_intermission.study.config",
        "FlowRunControlError": "prefect_intermission.errors",
        "IntermissionError": "prefect_intermission.errors",
        "ObjectiveImportError": "prefect_intermission.errors",
        "PausePolicy": "prefect_intermission.blocks.pause_policy",
        "PauseSignal": "prefect_intermission.training.pause_signal",
        "PausingSettings": "prefect_intermission.study.config",
        "SearchSettings": "prefect_intermission.study.config",
        "TrainingSettings": "prefect_intermission.training.trial_settings",
        "TrialLoop": "prefect_intermission.training.loop",
        "TrialPaused": "prefect_intermission.errors",
        "optimize_study": "prefect_intermission.flows.study",
        "request_pause": "prefect_intermission.control.run_control",
        "request_resume": "prefect_intermission.control.run_control",
    },
)

__all__ = [
    "BudgetSettings",
    "CheckpointError",
    "CheckpointSettings",
    "CheckpointStorageCredentials",
    "CheckpointStore",
    "ConfigurationError",
    "ExecutionSettings",
    "FlowRunControlError",
    "IntermissionError",
    "ObjectiveImportError",
    "PausePolicy",
    "PauseSignal",
    "PausingSettings",
    "SearchSettings",
    "TrainingSettings",
    "TrialLoop",
    "TrialPaused",
    "optimize_study",
    "request_pause",
    "request_resume",
]
