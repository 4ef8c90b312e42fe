"""Resolve a callable given as an import path, `"package.module:function"` (an objective, a factory),
and find the import path of a function given itself."""

from __future__ import annotations

import builtins
import importlib
import os
import sys
from collections.abc import Callable, Iterable
from typing import Any

from prefect_intermission.errors import ConfigurationError, ObjectiveImportError


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


def callable_path(function: Any, *, what: str) -> str:
    """The `"module:function"` that imports `function` back in any process of the study (the
    run a Resume executes again, a trial run on another worker); a clear error when there is none.

    Raises:
        ObjectiveImportError: `function` is a lambda, is defined inside another function, or
            its name no longer imports it (shadowed, or replaced by a decorator).
    """
    module, name = getattr(function, "__module__", None), getattr(function, "__qualname__", None)
    if not callable(function) or not module or not name:
        raise ObjectiveImportError(f"{what} must be a function or 'package.module:function', but got {function!r}.")
    if "<lambda>" in name or "<locals>" in name:
        where = "a lambda" if "<lambda>" in name else f"{name.split('.<locals>')[0]}() defines it inside itself"
        raise ObjectiveImportError(
            f"{what.capitalize()} {name!r} cannot be imported by the process that resumes the study "
            f"({where}): define it with `def` at the top level of a module, and pass it or its "
            "'package.module:function'."
        )
    if module == "__main__" and (spec := getattr(sys.modules["__main__"], "__spec__", None)) is not None:
        module = spec.name  # `python -m package.module`: its name imports it elsewhere too
    path = f"{module}:{name}"
    if import_callable(path, what=what) is not function:
        raise ObjectiveImportError(
            f"{what.capitalize()} {path!r} imports another object than the function given (shadowed, or "
            "replaced by a decorator): pass the 'package.module:function' of the function to run."
        )
    return path


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
