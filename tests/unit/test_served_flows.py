"""The package's flows can be served (`optimize_study.serve()`): the runner hands each run's process
the flow pickled by value (cloudpickle), and there it must still validate its parameters."""

from __future__ import annotations

import importlib

import cloudpickle
import pytest
from prefect import Flow
from prefect.exceptions import ParameterTypeError

from prefect_intermission.errors import ConfigurationError

FLOW_MODULES = ("study", "trial", "control")
FLOWS = [
    flow
    for module in FLOW_MODULES
    for flow in vars(importlib.import_module(f"prefect_intermission.flows.{module}")).values()
    if isinstance(flow, Flow) and flow.fn.__module__ == f"prefect_intermission.flows.{module}"
]


def _validated(flow: Flow, parameters: dict) -> object:
    """The parameters as the flow validates them, or what it says is wrong with them."""
    try:
        return flow.validate_parameters(parameters)
    except (ParameterTypeError, ConfigurationError) as e:
        return str(e)


def test_every_flow_of_the_package_is_checked():
    assert {"pausable-study", "pausable-trial", "resume-study"} <= {flow.name for flow in FLOWS}


@pytest.mark.parametrize("flow", FLOWS, ids=lambda flow: flow.name)
def test_a_flow_pickled_by_value_validates_its_parameters_as_the_original(flow):
    served = cloudpickle.loads(cloudpickle.dumps(flow))
    assert served.fn is not flow.fn, "pickled by value, as the runner of `serve()` sends it"
    assert _validated(served, {}) == _validated(flow, {})


def test_a_served_study_flow_reads_its_parameters():
    from prefect_intermission import optimize_study

    served = cloudpickle.loads(cloudpickle.dumps(optimize_study))
    parameters = {"study_name": "s", "objective": "m:f", "search": {"direction": "maximize"}, "budget": {"n_trials": "3"}}
    validated = served.validate_parameters(parameters)
    assert validated == optimize_study.validate_parameters(parameters)
    assert validated["budget"].n_trials == 3 and validated["search"].direction == "maximize"
