"""How a study searches: its Optuna sampler and pruner, built from plain JSON.

A sampler or pruner is given as one of (each can be typed in the UI's run form and
in `prefect deployment run --param`):

- a short name: `"tpe"`, `"random"` (samplers); `"median"`, `"none"` (pruners);
- a class name of `optuna.samplers` / `optuna.pruners`: `"CmaEsSampler"`;
- a JSON object whose `name` is such a class and whose other keys are its keyword
  arguments: `{"name": "HyperbandPruner", "min_resource": 1, "max_resource": 27}`;
  a keyword argument that is itself an object with a `name` (PatientPruner's
  `wrapped_pruner`, PartialFixedSampler's `base_sampler`) is built the same way;
- `"package.module:factory"` (or an object with that as its `name`): your own
  factory, called with the other keys and returning the sampler or pruner.

`seed` seeds a sampler (or factory) that takes one, unless the spec sets it.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Mapping
from typing import Any, Literal

import optuna
from optuna.pruners import BasePruner
from optuna.samplers import BaseSampler

from prefect_intermission._import_path import import_callable
from prefect_intermission.errors import ConfigurationError, ObjectiveImportError

SearchSpec = str | dict[str, Any]
Kind = Literal["sampler", "pruner"]

#: The short names accepted since the first version, as full specs.
SHORT_NAMES: dict[Kind, dict[str, dict[str, Any]]] = {
    "sampler": {"tpe": {"name": "TPESampler"}, "random": {"name": "RandomSampler"}},
    "pruner": {
        "median": {"name": "MedianPruner", "n_startup_trials": 3, "n_warmup_steps": 2},
        "none": {"name": "NopPruner"},
    },
}
_MODULES = {"sampler": optuna.samplers, "pruner": optuna.pruners}
_BASES: dict[Kind, type] = {"sampler": BaseSampler, "pruner": BasePruner}


def normalize(spec: object, kind: Kind) -> dict[str, Any]:
    """The spec as a JSON object with a `name` (short names expanded), or a clear error."""
    if isinstance(spec, str):
        expanded = SHORT_NAMES[kind].get(spec.strip().lower())
        return dict(expanded) if expanded is not None else {"name": spec.strip()}
    if isinstance(spec, Mapping) and isinstance(spec.get("name"), str):
        return dict(spec)
    raise ConfigurationError(
        f"{kind} must be a name such as {_examples(kind)} or a JSON object with a \"name\" and "
        f"the class's keyword arguments, e.g. {json.dumps(_object_example(kind))}; but got {spec!r}."
    )


def make_sampler(spec: SearchSpec, seed: int) -> BaseSampler:
    """A new sampler from its spec, seeded with `seed` unless the spec sets a seed."""
    return _build(normalize(spec, "sampler"), "sampler", seed=seed)


def make_pruner(spec: SearchSpec) -> BasePruner:
    """A pruner from its spec."""
    return _build(normalize(spec, "pruner"), "pruner", seed=None)


def describe_spec(spec: SearchSpec, kind: Kind) -> str:
    """The spec in one line, as JSON (for messages and the study's record)."""
    return json.dumps(normalize(spec, kind), sort_keys=True)


def _build(spec: dict[str, Any], kind: Kind, *, seed: int | None) -> Any:
    name = spec["name"]
    kwargs = {
        key: _build(value, kind, seed=seed) if isinstance(value, Mapping) and "name" in value else value
        for key, value in spec.items() if key != "name"
    }
    factory = _factory(name, kind)
    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        parameters = {}
    if seed is not None and "seed" in parameters and "seed" not in kwargs:
        kwargs["seed"] = seed
    accepted = [p for p in parameters if p not in ("self", "args", "kwargs")]
    if parameters and not any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        unknown = sorted(set(kwargs) - set(parameters))
        if unknown:
            raise ConfigurationError(
                f"{kind} {name!r} takes no argument(s) {', '.join(map(repr, unknown))}; it accepts: "
                f"{', '.join(accepted) or 'no arguments'}."
            )
    try:
        built = factory(**kwargs)
    except ImportError as e:
        raise ConfigurationError(
            f"{kind} {name!r} needs a package that is not installed: {e}. Install it on every "
            "worker (e.g. `pip install cmaes` for CmaEsSampler)."
        ) from e
    except (TypeError, ValueError) as e:
        raise ConfigurationError(f"{kind} {name!r} refused its arguments {kwargs!r}: {e}") from e
    if not isinstance(built, _BASES[kind]):
        raise ConfigurationError(
            f"{kind} factory {name!r} returned {type(built).__name__}, not an Optuna "
            f"{_BASES[kind].__name__}."
        )
    return built


def _factory(name: str, kind: Kind) -> Callable[..., Any]:
    """The class of optuna.samplers / optuna.pruners called `name`, or the factory it imports."""
    if ":" in name:
        try:
            return import_callable(name, what=f"{kind} factory")
        except ObjectiveImportError as e:
            raise ConfigurationError(str(e)) from e
    found = getattr(_MODULES[kind], name, None)
    if inspect.isclass(found) and issubclass(found, _BASES[kind]) and not inspect.isabstract(found):
        return found
    raise ConfigurationError(
        f"Unknown {kind} {name!r}. Accepted: {', '.join(accepted_names(kind))}, the short names "
        f"{', '.join(map(repr, SHORT_NAMES[kind]))}, or 'package.module:factory' for your own."
    )


def accepted_names(kind: Kind) -> list[str]:
    """The classes of optuna.samplers / optuna.pruners a spec may name."""
    module, base = _MODULES[kind], _BASES[kind]
    return sorted(
        name for name in module.__all__
        if inspect.isclass(cls := getattr(module, name)) and issubclass(cls, base) and not inspect.isabstract(cls)
        and cls is not base
    )


def _examples(kind: Kind) -> str:
    return ", ".join(repr(n) for n in [*SHORT_NAMES[kind], accepted_names(kind)[0]])


def _object_example(kind: Kind) -> dict[str, Any]:
    if kind == "sampler":
        return {"name": "TPESampler", "multivariate": True}
    return {"name": "HyperbandPruner", "min_resource": 1, "max_resource": 27, "reduction_factor": 3}
