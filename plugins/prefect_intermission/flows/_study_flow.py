"""The study flow's kind of Prefect flow: its settings come in groups, and it still takes them flat.

The study flow's run form shows its settings in groups (`budget`, `training`...). Runs
of earlier releases, deployments whose `parameters:` name settings flat (`n_trials: 30`),
`prefect deployment run --param n_trials=30` and Python calls such as
`optimize_study(..., n_trials=30)` keep working: each flat setting is moved into its group
before Prefect binds the parameters to the function. A wrong setting is refused with the
configuration's own message (the setting, its value, the rule and what it is for).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prefect import Flow
from prefect.exceptions import ParameterTypeError

from prefect_intermission.study.config import StudyConfig, grouped_parameters


class StudyFlow(Flow[..., Any]):
    """A `Flow` that moves settings given flat into their groups, however it is started."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """A call from Python: `optimize_study(..., n_trials=30)` is `budget={"n_trials": 30}`."""
        return super().__call__(*args, **grouped_parameters(kwargs))

    def validate_parameters(self, parameters: dict[str, Any]) -> dict[str, Any]:
        """A run's parameters (stored flat by a deployment or an earlier release, or in groups)."""
        parameters = grouped_parameters(parameters)
        try:
            return super().validate_parameters(parameters)
        except ParameterTypeError as e:
            StudyConfig.build(parameters)  # the message that names each wrong setting
            raise e


def study_flow(**options: Any) -> Callable[[Callable[..., Any]], StudyFlow]:
    """`@flow(**options)`, making a `StudyFlow`."""
    return lambda fn: StudyFlow(fn, **options)
