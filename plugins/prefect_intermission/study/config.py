"""A study's configuration: built once from the study flow's parameters, passed on to trial runs.

Every default is written here, and the study flow's signature takes its defaults
from this model; `intermission status` reads a run's parameters through it too.
"""

from __future__ import annotations

import json
import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from prefect_intermission._import_path import callable_path
from prefect_intermission._logging import run_logger
from prefect_intermission.errors import ConfigurationError

#: Where studies are stored unless `storage` says otherwise (a SQLite file in the working directory).
DEFAULT_STORAGE = "sqlite:///.intermission/studies.db"
#: Where checkpoints go unless `checkpoints` says otherwise.
DEFAULT_CHECKPOINTS = ".intermission/checkpoints"
#: Most trials one study run trains at once.
MAX_CONCURRENT_TRIALS = 16
#: Failed trials (NaN, or an exception listed in `catch`) after which a study run stops.
MAX_FAILED_TRIALS = 5

Direction = Literal["minimize", "maximize"]


class StudyConfig(BaseModel):
    """What a study is and how it runs: the study flow's parameters, validated once.

    See `optimize_study` for what each field means.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    study_name: str
    objective: str
    n_trials: int = 20
    max_epochs: int = 10
    seed: int | None = None
    storage: str = DEFAULT_STORAGE
    checkpoints: str = DEFAULT_CHECKPOINTS
    max_concurrent_trials: int = 1
    direction: Direction = "minimize"
    directions: list[Direction] | None = None
    sampler: str | dict[str, Any] = "tpe"
    pruner: str | dict[str, Any] = "median"
    allow_search_change: bool = False
    objective_params: dict[str, Any] = Field(default_factory=dict)
    catch: list[str] = Field(default_factory=list)
    max_failed_trials: int = MAX_FAILED_TRIALS
    timeout: float | None = None
    callbacks: list[str | dict[str, Any]] = Field(default_factory=list)
    enqueue: list[dict[str, Any]] = Field(default_factory=list)
    keep_checkpoints: int = 2
    pause_granularity: Literal["epoch", "step"] = "epoch"
    checkpoint_every_steps: int | None = None
    checkpoint_every_seconds: float | None = None
    patience: int | None = None
    restart_trials_without_checkpoints: bool = False
    pause_policy: str | None = None
    pause_rules: list[dict[str, Any]] = Field(default_factory=list)
    checkpoint_credentials: str | None = None
    trial_deployment: str | None = None

    @classmethod
    def default(cls, field: str) -> Any:
        """The default of `field`, for signatures that repeat the fields (the study flow's)."""
        info = cls.model_fields[field]
        return info.get_default(call_default_factory=True)

    @property
    def study_directions(self) -> list[Direction]:
        """The study's directions: `directions` when given, else `[direction]`."""
        return list(self.directions) if self.directions else [self.direction]

    @property
    def metric_direction(self) -> Direction:
        """How the loop compares the metric it tracks (the first objective's direction)."""
        return self.study_directions[0]

    @classmethod
    def from_run_parameters(cls, parameters: dict[str, Any]) -> StudyConfig:
        """The configuration a study flow run was started with (its defaults filled in).

        Parameters this version does not know, or values it cannot read (a run of an
        older version), are left out and take their defaults.
        """
        known = {k: v for k, v in parameters.items() if k in cls.model_fields and v is not None}
        if not isinstance(known.get("objective", ""), str):  # a function Prefect could not store: `{}`
            known["objective"] = ""
        try:
            return cls.model_validate(known)
        except ValidationError as e:
            unreadable = {str(error["loc"][0]) for error in e.errors() if error["loc"]}
            if not unreadable or unreadable & {"study_name", "objective"}:
                raise
            return cls.model_validate({k: v for k, v in known.items() if k not in unreadable})

    @field_validator("pause_policy", "checkpoint_credentials", mode="before")
    @classmethod
    def _block_name(cls, value: Any, info: ValidationInfo) -> Any:
        """A block given itself (the run form's picker, or a loaded one) is kept as the name it
        is saved under, which every process of the study loads it by."""
        if value is None or isinstance(value, str):
            return value
        from prefect_intermission._prefect_internals import saved_block_name  # Prefect's engine: only here

        name = saved_block_name(value)
        if name is None:
            raise ConfigurationError(
                f"{info.field_name} is a {type(value).__name__} that was never saved: save it "
                f"(e.g. .save('nightly')) and pass it, or its name."
            )
        return name

    @field_validator("objective", mode="before")
    @classmethod
    def _objective_path(cls, value: Any) -> Any:
        """A function given itself is kept as the import path every process finds it by."""
        return value if isinstance(value, str) else callable_path(value, what="objective")

    def check(self) -> None:
        """Refuse values the study cannot run with, before any work.

        Raises:
            ConfigurationError: naming the parameter, its value and the rule.
        """
        if self.trial_deployment and self.objective.startswith("__main__:"):
            raise ConfigurationError(
                f"objective {self.objective!r} is a function of the script this process runs, which "
                "the trial runs on other workers cannot import: move it into a module and pass it "
                "(or its 'package.module:function'), or run the script with `python -m`."
            )
        if self.n_trials < 1:
            raise ConfigurationError(f"n_trials must be >= 1, but got n_trials={self.n_trials}.")
        if self.max_epochs < 1:
            raise ConfigurationError(f"max_epochs must be >= 1, but got max_epochs={self.max_epochs}.")
        if not 1 <= self.max_concurrent_trials <= MAX_CONCURRENT_TRIALS:
            raise ConfigurationError(
                f"max_concurrent_trials must be between 1 and {MAX_CONCURRENT_TRIALS}, "
                f"but got max_concurrent_trials={self.max_concurrent_trials}."
            )
        if self.keep_checkpoints < 1:
            raise ConfigurationError(
                f"keep_checkpoints must be >= 1, but got keep_checkpoints={self.keep_checkpoints}."
            )
        if self.checkpoint_every_steps is not None and self.checkpoint_every_steps < 1:
            raise ConfigurationError(
                f"checkpoint_every_steps must be >= 1 or empty, but got checkpoint_every_steps={self.checkpoint_every_steps}."
            )
        if self.checkpoint_every_seconds is not None and not self.checkpoint_every_seconds > 0:
            raise ConfigurationError(
                "checkpoint_every_seconds must be > 0 or empty, but got "
                f"checkpoint_every_seconds={self.checkpoint_every_seconds}."
            )
        if self.max_failed_trials < 1:
            raise ConfigurationError(
                f"max_failed_trials must be >= 1, but got max_failed_trials={self.max_failed_trials}."
            )
        if self.timeout is not None and not (math.isfinite(self.timeout) and self.timeout > 0):
            raise ConfigurationError(
                f"timeout must be a number of seconds > 0, or empty for none, but got timeout={self.timeout}."
            )
        if self.directions is not None and not self.directions:
            raise ConfigurationError("directions must list at least one direction, or be empty to use `direction`.")
        if self.directions and self.direction != "minimize" and self.directions[0] != self.direction:
            raise ConfigurationError(
                f"Give either direction or directions, not both (direction={self.direction!r}, "
                f"directions={self.directions!r})."
            )
        from prefect_intermission.study.callbacks import load_callbacks
        from prefect_intermission.study.failures import exception_types
        from prefect_intermission.study.search import make_pruner, make_sampler

        make_sampler(self.sampler, self.seed if self.seed is not None else 0)  # the spec is what is checked
        make_pruner(self.pruner)
        exception_types(self.catch)
        load_callbacks(self.callbacks)
        try:
            json.dumps(self.objective_params)
        except (TypeError, ValueError) as e:
            raise ConfigurationError(f"objective_params must be a JSON object: {e}.") from e
        if self.patience is not None and self.patience < 1:
            raise ConfigurationError(
                f"patience must be >= 1 (epochs without improvement before a trial stops early) "
                f"or empty to never stop early, but got patience={self.patience}."
            )

    def with_policy_location(self, policy: Any, *, warn: bool = True) -> StudyConfig:
        """Apply a saved pause policy's checkpoint location (deprecated there) to this configuration.

        Pause policies saved before the location moved to the study's `checkpoints` and
        `keep_checkpoints` parameters may still hold one; it is honoured, with a warning,
        so a study keeps finding its checkpoints.
        """
        location = getattr(policy, "checkpoints", None) if policy is not None else None
        if not location:
            return self
        if warn:  # on the run's log, where the user looks
            run_logger(__name__).warning(
                "Pause policy %r sets the checkpoint location, which is deprecated: set the study's "
                "`checkpoints` (and `keep_checkpoints`) parameters to %r (and %d) instead and clear "
                "them in the policy. Using the policy's location for now.",
                getattr(policy, "_block_document_name", None) or "(unsaved)", location, policy.keep_checkpoints,
            )
        return self.model_copy(update={"checkpoints": location, "keep_checkpoints": policy.keep_checkpoints})
