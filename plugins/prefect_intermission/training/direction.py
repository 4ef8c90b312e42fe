"""How a study's direction compares metrics: written once for the loop, the rules and the study."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from pydantic import TypeAdapter, ValidationError

from prefect_intermission.errors import ConfigurationError

Direction = Literal["minimize", "maximize"]


def check_direction(direction: str) -> None:
    """Refuse anything but a `Direction`."""
    try:
        TypeAdapter(Direction).validate_python(direction)
    except ValidationError as e:
        raise ConfigurationError(f"direction must be 'minimize' or 'maximize', but got {direction=}.") from e


def is_better(metric: float, than: float | None, direction: Direction) -> bool:
    """Whether `metric` beats `than` (anything beats None)."""
    if than is None:
        return True
    return metric < than if direction == "minimize" else metric > than


def reaches(metric: float | None, threshold: float, direction: Direction) -> bool:
    """Whether `metric` is at `threshold` or beyond it, in the direction's sense."""
    if metric is None:
        return False
    return metric <= threshold if direction == "minimize" else metric >= threshold


def best_of(metrics: Iterable[float], direction: Direction) -> float | None:
    """The best of `metrics`, or None if there are none."""
    values = list(metrics)
    if not values:
        return None
    return min(values) if direction == "minimize" else max(values)
