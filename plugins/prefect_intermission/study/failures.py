"""Which failures end only their trial, as Optuna treats them, and which stop the study.

Optuna marks a trial FAIL and goes on when its objective returns NaN or raises an
exception listed in `catch`. So does a study here, and also when a trial runs out
of GPU memory (its parameters asked too much). Anything else the objective raises
stops the study, the trials in flight paused, so the error can be fixed first.
"""

from __future__ import annotations

import torch

from prefect_intermission._import_path import exception_types
from prefect_intermission.errors import MetricNotFinite

__all__ = ["exception_types", "failure_of_trial"]


def failure_of_trial(error: BaseException, catch: tuple[type[BaseException], ...]) -> str | None:
    """Why `error` fails only its trial (the study goes on), or None when it stops the study."""
    if isinstance(error, torch.OutOfMemoryError):
        return (
            "it ran out of GPU memory (its parameters need more than the GPU has); the trial "
            "failed, the study goes on"
        )
    if isinstance(error, MetricNotFinite):
        return f"{error}; the trial failed, the study goes on"
    if catch and isinstance(error, catch):
        return f"{type(error).__name__}: {error} (listed in catch); the trial failed, the study goes on"
    return None
