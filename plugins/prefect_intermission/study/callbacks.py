"""Optuna callbacks, called with the study and the finished trial, as `study.optimize` calls them.

The study flow takes them as `"package.module:factory"` or
`{"callback": "package.module:factory", **kwargs}`: the factory is called (with the
kwargs) in every process that finishes trials and returns the callback, e.g.
optuna-integration's MLflow callback from a factory of your own. A callback that
raises is logged on the run and the study goes on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from prefect_intermission._import_path import import_callable
from prefect_intermission.errors import ConfigurationError, ObjectiveImportError

TrialCallback = Callable[[optuna.Study, FrozenTrial], Any]


def load_callbacks(specs: Iterable[str | dict[str, Any]]) -> list[TrialCallback]:
    """The callbacks `specs` name, each made by its factory."""
    return [_load(spec) for spec in specs]


def _load(spec: str | dict[str, Any]) -> TrialCallback:
    if isinstance(spec, str):
        path, kwargs = spec, {}
    elif isinstance(spec, dict) and isinstance(spec.get("callback"), str):
        path, kwargs = spec["callback"], {k: v for k, v in spec.items() if k != "callback"}
    else:
        raise ConfigurationError(
            "Each of callbacks must be 'package.module:factory' or "
            f'{{"callback": "package.module:factory", ...its arguments}}, but got {spec!r}.'
        )
    try:
        factory = import_callable(path, what="callback factory")
    except ObjectiveImportError as e:
        raise ConfigurationError(str(e)) from e
    try:
        callback = factory(**kwargs)
    except TypeError as e:
        raise ConfigurationError(f"Callback factory {path!r} refused its arguments {kwargs!r}: {e}") from e
    if not callable(callback):
        raise ConfigurationError(
            f"Callback factory {path!r} returned {callback!r}, not a callable taking (study, trial)."
        )
    return callback
