"""How each trial trains: the study's `training` settings, as every trial receives them.

The one place these settings are described and validated: the study flow's run form
shows this model as its "training" group, and `TrialLoop` takes it whole.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from prefect_intermission._import_path import exception_types
from prefect_intermission._validation import imports_user_code, problems
from prefect_intermission.errors import ConfigurationError

PauseGranularity = Literal["epoch", "step"]


class TrainingSettings(BaseModel):
    """How each trial trains: its epochs, when it stops early, and where within an epoch it may
    pause or checkpoint."""

    model_config = ConfigDict(frozen=True, extra="forbid", title="Training")

    max_epochs: int = Field(10, ge=1, description="Epochs a trial trains at most.")
    patience: int | None = Field(
        None, ge=1,
        description="Stop a trial early (it completes with its last value) after this many epochs in a row "
        "without a better metric; empty: trials train `max_epochs`.",
    )
    objective_params: dict[str, Any] = Field(
        default_factory=dict,
        description="Settings for the objective (a JSON object, e.g. a data path), read as "
        "`loop.objective_params`; a study keeps the ones it started with.",
    )
    catch: list[str] = Field(
        default_factory=list,
        description="Exceptions that fail only their trial, as in `study.optimize(catch=...)`, e.g. "
        '`["ValueError", "mypackage.errors.BadBatch"]`. A NaN metric or value and running out of GPU '
        "memory always do; anything else pauses the study.",
    )
    pause_granularity: PauseGranularity = Field(
        "epoch",
        description='`"epoch"`: a pause waits for the end of each trial\'s epoch; `"step"`: it stops at '
        "the next `loop.step()`, with a checkpoint holding the data position (the loader made with "
        "`loop.data_loader(...)`).",
    )
    checkpoint_every_steps: int | None = Field(
        None, ge=1,
        description="Also checkpoint within epochs every this many steps, so a crash loses at most that "
        "many (needs `loop.data_loader(...)`).",
    )
    checkpoint_every_seconds: float | None = Field(
        None, gt=0, allow_inf_nan=False,
        description="Also checkpoint within epochs once this many seconds passed since the last checkpoint.",
    )

    @field_validator("catch")
    @classmethod
    def _exception_classes(cls, names: list[str], info: ValidationInfo) -> list[str]:
        if imports_user_code(info):
            exception_types(names)
        return names

    @field_validator("objective_params")
    @classmethod
    def _json_object(cls, value: dict[str, Any]) -> dict[str, Any]:
        """The objective's settings travel to trial runs as JSON: refuse what JSON cannot hold."""
        try:
            json.dumps(value)
        except (TypeError, ValueError) as e:
            raise ValueError(f"objective_params must be a JSON object: {e}") from e
        return value

    @classmethod
    def of(cls, training: TrainingSettings | None = None, **settings: Any) -> TrainingSettings:
        """`training`, or the settings given one by one (`max_epochs=6`), or a `ConfigurationError`
        that names each wrong setting, its value and the rule."""
        if training is not None:
            if settings:
                raise ConfigurationError(f"Give the training settings either as `training` or one by one, not both: {sorted(settings)}.")
            return training
        try:
            return cls(**settings)
        except ValidationError as e:
            raise ConfigurationError(f"Invalid training settings: {problems(e, cls)}.") from e
