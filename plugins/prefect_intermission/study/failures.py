"""Which failures end only their trial, as Optuna treats them, and which stop the study.

Optuna marks a trial FAIL and goes on when its objective returns NaN or raises an
exception listed in `catch`. So does a study here, and also when a trial runs out
of GPU memory (its parameters asked too much). Anything else the objective raises
stops the study, the trials in flight paused, so the error can be fixed first.
"""

from __future__ import annotations

import builtins
import importlib
from collections.abc import Iterable

import torch

from prefect_intermission.errors import ConfigurationError, MetricNotFinite


def exception_types(names: Iterable[str]) -> tuple[type[BaseException], ...]:
    """The exception classes `catch` names: `"ValueError"` or `"package.module.Error"`
    (or `"package.module:Error"`)."""
    return tuple(_exception_type(name) for name in names)


def _exception_type(name: str) -> type[BaseException]:
    module_name, _, attribute = name.replace(":", ".").rpartition(".")
    try:
        found = getattr(importlib.import_module(module_name) if module_name else builtins, attribute)
    except (ImportError, AttributeError, ValueError) as e:
        raise ConfigurationError(
            f"catch lists {name!r}, which names no exception class: {e}. Give a built-in name such "
            "as 'ValueError' or a full path such as 'torch.OutOfMemoryError'."
        ) from e
    if not (isinstance(found, type) and issubclass(found, Exception)):
        raise ConfigurationError(f"catch lists {name!r}, which is not an Exception class.")
    return found


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
