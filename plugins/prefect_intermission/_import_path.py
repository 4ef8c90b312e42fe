"""Resolve an objective given as an import path, `"package.module:function"`."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from typing import Any

from prefect_intermission.errors import ObjectiveImportError


def import_objective(path: str) -> Callable[..., Any]:
    """Import the callable named by `path`.

    The current directory is importable, as with `python -m`, so a deployment whose
    working directory is the project finds `flows.my_objective:objective`.
    """
    module_name, sep, attribute = path.partition(":")
    if not sep or not module_name or not attribute:
        raise ObjectiveImportError(
            f"objective must look like 'package.module:function', but got {path!r}."
        )
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ObjectiveImportError(
            f"Cannot import module {module_name!r} of objective {path!r}: {e}. Check the "
            "spelling and that the module is installed or in the working directory."
        ) from e
    target: Any = module
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError as e:
            raise ObjectiveImportError(
                f"Module {module_name!r} has no attribute {attribute!r} (objective {path!r})."
            ) from e
    if not callable(target):
        raise ObjectiveImportError(f"Objective {path!r} is not callable.")
    return target
