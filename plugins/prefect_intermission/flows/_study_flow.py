"""The study flow's kind of Prefect flow: its settings come in groups, and Python takes them flat too.

The study flow's run form shows its settings in groups (`budget`, `training`...). From
Python, a setting may also be given on its own, as earlier releases took it:
`optimize_study(..., n_trials=30)`, and the `parameters` of `optimize_study.serve(...)`,
`.deploy(...)` and `.to_deployment(...)`; each is moved into its group before Prefect sees
it. (A deployment's stored parameters and `prefect deployment run --param` must name the
groups: Prefect's engine binds a run's parameters to the function before any code of
this package runs.) A wrong setting is refused with the configuration's own message (the
setting, its value, the rule and what it is for).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prefect import Flow
from prefect.exceptions import ParameterTypeError

from prefect_intermission.study.config import StudyConfig, grouped_parameters


class StudyFlow(Flow[..., Any]):
    """A `Flow` that moves settings given flat from Python into their groups."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """A call from Python: `optimize_study(..., n_trials=30)` is `budget={"n_trials": 30}`."""
        return super().__call__(*args, **grouped_parameters(kwargs))

    def with_options(self, **options: Any) -> StudyFlow:
        """`Flow.with_options`, still a `StudyFlow` (Prefect's makes a plain `Flow`)."""
        flow = super().with_options(**options)
        flow.__class__ = StudyFlow
        return flow

    def serve(self, *args: Any, parameters: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        """`Flow.serve`, its `parameters` in their groups."""
        return super().serve(*args, parameters=_grouped(parameters), **kwargs)

    def to_deployment(self, *args: Any, parameters: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        """`Flow.to_deployment`, its `parameters` in their groups."""
        return super().to_deployment(*args, parameters=_grouped(parameters), **kwargs)

    def deploy(self, *args: Any, parameters: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        """`Flow.deploy`, its `parameters` in their groups."""
        return super().deploy(*args, parameters=_grouped(parameters), **kwargs)

    def validate_parameters(self, parameters: dict[str, Any]) -> dict[str, Any]:
        """A run's parameters, refused with the message that names each wrong setting."""
        try:
            return super().validate_parameters(parameters)
        except ParameterTypeError as e:
            StudyConfig.build(parameters)  # the message that names each wrong setting
            raise e


def _grouped(parameters: dict[str, Any] | None) -> dict[str, Any] | None:
    return grouped_parameters(parameters) if parameters else parameters


def study_flow(**options: Any) -> Callable[[Callable[..., Any]], StudyFlow]:
    """`@flow(**options)`, making a `StudyFlow`."""
    return lambda fn: StudyFlow(fn, **options)
