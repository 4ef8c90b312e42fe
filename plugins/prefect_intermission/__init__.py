"""prefect-intermission: pausable Optuna studies on Prefect.

A pause stops every trial at its next epoch boundary after its checkpoint and the
study's state are stored, then suspends the flow run; a resume continues every
trial from exactly where it stopped.
"""

from prefect_intermission.checkpoints import CheckpointStore
from prefect_intermission.credentials import CheckpointStorageCredentials
from prefect_intermission.errors import (
    CheckpointError,
    ConfigurationError,
    FlowRunControlError,
    IntermissionError,
    ObjectiveImportError,
    TrialPaused,
)
from prefect_intermission.flow_run_control import request_pause, request_resume
from prefect_intermission.pause_policy import PausePolicy
from prefect_intermission.pause_signals import PauseSignal
from prefect_intermission.study_flow import optimize_study
from prefect_intermission.trial_loop import TrialLoop

__all__ = [
    "CheckpointError",
    "CheckpointStorageCredentials",
    "CheckpointStore",
    "ConfigurationError",
    "FlowRunControlError",
    "IntermissionError",
    "ObjectiveImportError",
    "PausePolicy",
    "PauseSignal",
    "TrialLoop",
    "TrialPaused",
    "optimize_study",
    "request_pause",
    "request_resume",
]
