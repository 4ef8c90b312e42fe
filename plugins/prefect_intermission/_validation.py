"""Pydantic's validation errors, said the way this project says a wrong setting."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError, ValidationInfo

#: The validation context of a run's settings read back (`intermission status`, a control flow):
#: the checks that import the user's code (a sampler factory, callbacks, rules) are left out.
READING: dict[str, bool] = {"reading": True}


def imports_user_code(info: ValidationInfo) -> bool:
    """Whether a check that imports the user's code runs: not while a run's settings are read back."""
    return not (info.context or {}).get("reading", False)


def problems(error: ValidationError, model: type[BaseModel]) -> str:
    """Each problem of `error` on one line: where, the value given, the rule, and what the
    setting is for (its description in `model`)."""
    return "; ".join(_problem(e, model) for e in error.errors())


def _problem(error: Any, model: type[BaseModel]) -> str:
    where = ".".join(map(str, error["loc"])) or model.__name__
    rule = str(error["msg"]).removeprefix("Value error, ").rstrip(".")
    given = f" = {error['input']!r}" if error["type"] not in ("missing", "model_type", "model_attributes_type") else ""
    description = _description(model, error["loc"])
    return f"{where}{given}: {rule}" + (f" ({description})" if description else "")


def _description(model: type[BaseModel], location: tuple[Any, ...]) -> str | None:
    """The description of the field at `location`, following nested models."""
    description, current = None, model
    for part in location:
        info = current.model_fields.get(str(part)) if isinstance(current, type) else None
        if info is None:
            return None
        description, current = info.description, info.annotation
    return description
