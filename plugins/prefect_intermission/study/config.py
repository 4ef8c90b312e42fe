"""A study's configuration: the study flow's parameters, in groups, validated once.

`StudyConfig` is the one source of the study's settings: the study flow takes its
groups as parameters (the run form shows each group with its description), trial runs
receive it whole, `intermission status` reads a run's parameters through it, and the
documentation site's parameter table is generated from it (`make docs-reference`, through
`prefect_intermission.study.parameter_table`).
Parameters of earlier releases, given flat (`n_trials=5`), are moved into their groups.
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from prefect_intermission._import_path import callable_path
from prefect_intermission._logging import run_logger
from prefect_intermission._validation import READING, imports_user_code, problems
from prefect_intermission.blocks.credentials import CheckpointStorageCredentials
from prefect_intermission.blocks.pause_policy import PausePolicy
from prefect_intermission.errors import ConfigurationError
from prefect_intermission.training.direction import Direction
from prefect_intermission.training.retention import KeepLast
from prefect_intermission.training.trial_settings import TrainingSettings

#: Where studies are stored unless `storage` says otherwise (a SQLite file in the working directory).
DEFAULT_STORAGE = "sqlite:///.intermission/studies.db"
#: Where checkpoints go unless `checkpoints` says otherwise.
DEFAULT_CHECKPOINTS = ".intermission/checkpoints"
#: Most trials one study run trains at once.
MAX_CONCURRENT_TRIALS = 16
#: Failed trials (NaN, or an exception listed in `catch`) after which a study run stops.
MAX_FAILED_TRIALS = 5

_GROUP = ConfigDict(frozen=True, extra="forbid")


class SearchSettings(BaseModel):
    """What the search optimizes and how it picks parameters: Optuna's sampler, pruner and seed."""

    model_config = ConfigDict(**_GROUP, title="Search")

    direction: Direction = Field("minimize", description="Whether the objective's value is minimized or maximized.")
    directions: list[Direction] | None = Field(
        None, min_length=1,
        description='Several objectives, e.g. `["minimize", "maximize"]`: the objective returns one value per '
        "direction, and `loop.end_epoch` takes the first objective's metric. Optuna prunes no trial of such a study.",
    )
    sampler: str | dict[str, Any] = Field(
        "tpe",
        description='The Optuna sampler: `"tpe"`, `"random"`, a class of `optuna.samplers` (`"CmaEsSampler"`), '
        'a JSON object with its `name` and keyword arguments (`{"name": "TPESampler", "multivariate": true}`), '
        'or `"package.module:factory"`. Stored with the study, so a resume continues its sequence.',
    )
    pruner: str | dict[str, Any] = Field(
        "median",
        description='The Optuna pruner, given the same way: `"median"`, `"none"`, or e.g. '
        '`{"name": "HyperbandPruner", "min_resource": 1, "max_resource": 27}` (BOHB with the TPE sampler).',
    )
    seed: int | None = Field(
        None,
        description="Seeds the sampler and every trial, so a search can be repeated exactly; empty: a new study "
        "draws one, recorded with it (`intermission status` shows it).",
    )
    allow_search_change: bool = Field(
        False,
        description="Let a resumed study switch to another sampler or pruner than the one it was started with "
        "(refused otherwise).",
    )
    enqueue: list[dict[str, Any]] = Field(
        default_factory=list, description='Parameter sets to try first, e.g. `[{"lr": 0.01}]` (each once).',
    )
    callbacks: list[str | dict[str, Any]] = Field(
        default_factory=list,
        description='Optuna callbacks called with `(study, trial)` once a trial finishes, as `"package.module:factory"` '
        'or `{"callback": "package.module:factory", ...}`.',
    )

    @model_validator(mode="after")
    def _one_way_to_say_the_direction(self) -> SearchSettings:
        if self.directions and self.direction != "minimize" and self.directions[0] != self.direction:
            raise ValueError(
                f"give either direction or directions, not both (direction={self.direction!r}, "
                f"directions={self.directions!r})"
            )
        return self

    @field_validator("sampler")
    @classmethod
    def _known_sampler(cls, spec: str | dict[str, Any], info: ValidationInfo) -> str | dict[str, Any]:
        from prefect_intermission.study.search import make_sampler

        if imports_user_code(info):
            make_sampler(spec, 0)  # the spec is what is checked; the study seeds the sampler it uses
        return spec

    @field_validator("pruner")
    @classmethod
    def _known_pruner(cls, spec: str | dict[str, Any], info: ValidationInfo) -> str | dict[str, Any]:
        from prefect_intermission.study.search import make_pruner

        if imports_user_code(info):
            make_pruner(spec)
        return spec

    @field_validator("callbacks")
    @classmethod
    def _importable_callbacks(
        cls, specs: list[str | dict[str, Any]], info: ValidationInfo
    ) -> list[str | dict[str, Any]]:
        from prefect_intermission.study.callbacks import load_callbacks

        if imports_user_code(info):
            load_callbacks(specs)
        return specs

    @property
    def study_directions(self) -> list[Direction]:
        """The study's directions: `directions` when given, else `[direction]`."""
        return list(self.directions) if self.directions else [self.direction]

    @property
    def metric_direction(self) -> Direction:
        """How the loop compares the metric it tracks (the first objective's direction)."""
        return self.study_directions[0]


class BudgetSettings(BaseModel):
    """How much the study trains: trials, training time, and failures it tolerates."""

    model_config = ConfigDict(**_GROUP, title="Budget")

    n_trials: int = Field(20, ge=1, description="Finished trials wanted in total, counting earlier runs.")
    timeout: float | None = Field(
        None, gt=0, allow_inf_nan=False,
        description="Seconds of training (all runs of the study together, pauses not counted) after which no new "
        "trial starts and the study completes with what it has; empty: no limit.",
    )
    max_failed_trials: int = Field(
        MAX_FAILED_TRIALS, ge=1,
        description="Failed trials after which this run stops, the trials in flight paused: the objective looks broken.",
    )


class CheckpointSettings(BaseModel):
    """Where trial checkpoints are kept, and how many."""

    model_config = ConfigDict(**_GROUP, title="Checkpointing")

    checkpoints: str = Field(
        DEFAULT_CHECKPOINTS,
        description="Where trial checkpoints go: a local folder (relative to the run's working directory) or any "
        "fsspec URL, e.g. `s3://bucket/prefix`.",
    )
    keep_checkpoints: KeepLast = Field(
        2, description="Last checkpoints kept per trial (its best epoch's is kept besides).",
    )
    checkpoint_credentials: CheckpointStorageCredentials | str | None = Field(
        None,
        description="A saved `CheckpointStorageCredentials` block (the run form's picker) or its name, for an "
        "`s3://` checkpoint location; empty to use the worker's AWS environment.",
    )
    restart_trials_without_checkpoints: bool = Field(
        False, description="Retrain from the start, instead of failing, trials whose checkpoints were deleted.",
    )

    @field_validator("checkpoint_credentials", mode="before")
    @classmethod
    def _credentials_name(cls, value: Any, info: ValidationInfo) -> Any:
        return _block_name(value, info)


class PausingSettings(BaseModel):
    """What pauses the study besides the UI and the CLI, and whom it tells."""

    model_config = ConfigDict(**_GROUP, title="Pausing")

    pause_policy: PausePolicy | str | None = Field(
        None,
        description="A saved `PausePolicy` block (the run form's picker) or its name: notifications, resume "
        "schedule, pause windows and pause file.",
    )
    pause_rules: list[dict[str, Any]] = Field(
        default_factory=list,
        description='Conditions checked at every epoch boundary that pause the study, as `{"rule": '
        '"package.module:factory", **kwargs}` (see `prefect_intermission.pausing.rules`).',
    )

    @field_validator("pause_policy", mode="before")
    @classmethod
    def _policy_name(cls, value: Any, info: ValidationInfo) -> Any:
        return _block_name(value, info)

    @field_validator("pause_rules")
    @classmethod
    def _loadable_rules(cls, specs: list[dict[str, Any]], info: ValidationInfo) -> list[dict[str, Any]]:
        from prefect_intermission.pausing.rules import load_rules

        if imports_user_code(info):
            load_rules(specs)
        return specs


class ExecutionSettings(BaseModel):
    """Where the study is stored and where its trials train."""

    model_config = ConfigDict(**_GROUP, title="Execution")

    storage: str = Field(
        DEFAULT_STORAGE,
        description="Optuna RDB storage, a SQLAlchemy URL (`sqlite:///...`, relative to the run's working directory, "
        "or `postgresql+psycopg://user@host/db`; the password comes from the worker's PGPASSWORD or ~/.pgpass, "
        "never from the URL).",
    )
    max_concurrent_trials: int = Field(
        1, ge=1, le=MAX_CONCURRENT_TRIALS,
        description="Trials trained at once: threads of this flow run, or trial runs with `trial_deployment`.",
    )
    trial_deployment: str | None = Field(
        None,
        description='Run each trial as a flow run of this deployment of the `pausable-trial` flow (e.g. '
        '`"pausable-trial/train-trial"`), so that its work pool\'s workers train trials in parallel; empty: trials '
        "run as tasks in this flow run. Storage and checkpoints must then be reachable from every worker.",
    )


class StudyConfig(BaseModel):
    """What a study is and how it runs: the study flow's parameters, validated once."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    study_name: str = Field(description="The Optuna study; running the flow again with it continues the study.")
    objective: str = Field(
        description='The function, or its `"package.module:function"`; it takes `(trial, loop)` and trains with '
        "`loop` (a `TrialLoop`), returning the trial's value.",
    )
    search: SearchSettings = Field(default_factory=SearchSettings)
    budget: BudgetSettings = Field(default_factory=BudgetSettings)
    training: TrainingSettings = Field(default_factory=TrainingSettings)
    checkpointing: CheckpointSettings = Field(default_factory=CheckpointSettings)
    pausing: PausingSettings = Field(default_factory=PausingSettings)
    execution: ExecutionSettings = Field(default_factory=ExecutionSettings)

    @model_validator(mode="before")
    @classmethod
    def _grouped(cls, parameters: Any) -> Any:
        return grouped_parameters(parameters) if isinstance(parameters, dict) else parameters

    @field_validator("objective", mode="before")
    @classmethod
    def _objective_path(cls, value: Any) -> Any:
        """A function given itself is kept as the import path every process finds it by."""
        return value if isinstance(value, str) else callable_path(value, what="objective")

    @model_validator(mode="after")
    def _importable_where_trials_run(self) -> StudyConfig:
        if self.execution.trial_deployment and self.objective.startswith("__main__:"):
            raise ValueError(
                f"objective {self.objective!r} is a function of the script this process runs, which the trial "
                "runs on other workers cannot import: move it into a module and pass it (or its "
                "'package.module:function'), or run the script with `python -m`"
            )
        return self

    @classmethod
    def build(cls, parameters: dict[str, Any]) -> StudyConfig:
        """The configuration from the study flow's parameters, or a `ConfigurationError` that names
        each wrong parameter, its value, the rule and what the parameter is for."""
        try:
            return cls.model_validate(parameters)
        except ValidationError as e:
            raise ConfigurationError(f"Invalid study parameters: {problems(e, cls)}.") from e

    @classmethod
    def from_run_parameters(cls, parameters: dict[str, Any]) -> StudyConfig:
        """The configuration a study flow run was started with (its defaults filled in).

        Parameters this version does not know, or values it cannot read (a run of an
        older version), are left out and take their defaults.
        """
        known = copy.deepcopy(
            {k: v for k, v in grouped_parameters(parameters).items() if k in cls.model_fields and v is not None}
        )
        if not isinstance(known.get("objective", ""), str):  # a function Prefect could not store: `{}`
            known["objective"] = ""
        for _ in range(len(_FIELD_GROUP) + 1):  # leave out one unreadable setting at a time
            try:
                return cls.model_validate(known, context=READING)
            except ValidationError as e:
                locations = [error["loc"] for error in e.errors() if error["loc"]]
                if not locations or any(loc[0] in ("study_name", "objective") for loc in locations):
                    raise
                for loc in locations:
                    group = known.get(str(loc[0]))
                    if len(loc) > 1 and isinstance(group, dict):
                        group.pop(str(loc[1]), None)
                    else:
                        known.pop(str(loc[0]), None)
        raise ConfigurationError(f"The run's parameters cannot be read: {parameters!r}.")

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
                "`checkpointing.checkpoints` (and `keep_checkpoints`) parameters to %r (and %d) instead and "
                "clear them in the policy. Using the policy's location for now.",
                getattr(policy, "_block_document_name", None) or "(unsaved)", location, policy.keep_checkpoints,
            )
        checkpointing = CheckpointSettings.model_validate(
            {**self.checkpointing.model_dump(), "checkpoints": location, "keep_checkpoints": policy.keep_checkpoints}
        )
        return self.model_copy(update={"checkpointing": checkpointing})

    def with_seed(self, seed: int) -> StudyConfig:
        """This configuration with the study's seed (the one it was created with, or drew)."""
        return self.model_copy(update={"search": self.search.model_copy(update={"seed": seed})})


#: The groups of settings, by the parameter name the study flow takes each under.
SETTING_GROUPS: dict[str, type[BaseModel]] = {
    name: info.annotation
    for name, info in StudyConfig.model_fields.items()
    if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel)
}

#: Which group holds each setting, for parameters given flat (as earlier releases took them).
_FIELD_GROUP: dict[str, str] = {name: group for group, model in SETTING_GROUPS.items() for name in model.model_fields}


def grouped_parameters(parameters: dict[str, Any]) -> dict[str, Any]:
    """`parameters` with any setting given flat (`n_trials=5`) moved into its group
    (`budget={"n_trials": 5}`), over its group's value if the group is given too."""
    flat = {name: value for name, value in parameters.items() if name in _FIELD_GROUP}
    if not flat:
        return parameters
    result = {name: value for name, value in parameters.items() if name not in _FIELD_GROUP}
    for name, value in flat.items():
        group_name = _FIELD_GROUP[name]
        group = result.get(group_name)
        group = dict(group.model_dump(exclude_unset=True) if isinstance(group, BaseModel) else group or {})
        if value is None:  # None was every flat setting's "the default"
            continue
        group[name] = value
        result[group_name] = group
    return result


def _block_name(value: Any, info: ValidationInfo) -> Any:
    """A block given itself (the run form's picker, or a loaded one) is kept as the name it is
    saved under, which every process of the study loads it by."""
    if value is None or isinstance(value, str):
        return value
    from prefect_intermission._prefect_internals import saved_block_name  # Prefect's engine: only here

    name = saved_block_name(value)
    if name is None:
        raise ValueError(
            f"{info.field_name} is a {type(value).__name__} that was never saved: save it "
            f"(e.g. .save('nightly')) and pass it, or its name"
        )
    return name

