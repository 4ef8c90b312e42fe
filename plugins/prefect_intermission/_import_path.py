"""Resolve a callable given as an import path, `"package.module:function"` (an objective, a factory)."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from typing import Any

from prefect_intermission.errors import ObjectiveImportError


def import_objective(path: str) -> Callable[..., Any]:
    """Import the objective named by `path`."""
    return import_callable(path, what="objective")


def import_callable(path: str, *, what: str) -> Callable[..., Any]:
    """Import the callable named by `path`; `what` names it in errors (e.g. "objective").

    The current directory is importable, as with `python -m`, so a deployment whose
    working directory is the project finds `flows.my_objective:objective`.
    """
    module_name, sep, attribute = path.partition(":")
    if not sep or not module_name or not attribute:
        raise ObjectiveImportError(
            f"{what} must look like 'package.module:function', but got {path!r}."
        )
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ObjectiveImportError(
            f"Cannot import module {module_name!r} of {what} {path!r}: {e}. Check the "
            "spelling and that the module is installed or in the working directory."
        ) from e
    target: Any = module
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError as e:
            raise ObjectiveImportError(
                f"Module {module_name!r} has no attribute {attribute!r} ({what} {path!r})."
            ) from e
    if not callable(target):
        raise ObjectiveImportError(f"{what.capitalize()} {path!r} is not callable.")
    return target
