"""Heavy parts load on first use (as `optuna/_imports.py` does for Optuna)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any


def lazy_attributes(
    package: str, origins: dict[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A module's `__getattr__` and `__dir__` that import each name from its module when first read.

    Args:
        package: The name of the module that re-exports the names (for error messages).
        origins: Each public name and the module that defines it.
    """

    def __getattr__(name: str) -> Any:
        if name not in origins:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(origins[name]), name)
        setattr(sys.modules[package], name, value)  # later reads skip this function
        return value

    def __dir__() -> list[str]:
        return sorted(origins)

    return __getattr__, __dir__
