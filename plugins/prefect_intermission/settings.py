"""The `INTERMISSION_*` environment variables, read through one settings class.

Like Prefect's own settings (and prefect-aws's `settings.py`), every variable the
package reads is a field here, with its default and its meaning written once.
"""

from __future__ import annotations

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from prefect_intermission.errors import ConfigurationError


class IntermissionSettings(BaseSettings):
    """Settings read from `INTERMISSION_<FIELD>` environment variables of the process."""

    # An empty variable counts as unset, as it did before this class read them.
    model_config = SettingsConfigDict(env_prefix="INTERMISSION_", extra="ignore", env_ignore_empty=True)

    lease_seconds: float = Field(
        default=30.0,
        description="How long a study's lease (or a trial's claim) lasts without renewal, in seconds; at least 1.",
    )
    pause_poll_seconds: float = Field(
        default=1.0,
        description=(
            "Seconds between two reads of the study run's state (and its trial runs') by the study's "
            "process; at least 0.05. One request per interval, however many trial runs."
        ),
    )
    trial_run_poll_seconds: float = Field(
        default=10.0,
        description=(
            "Seconds between two reads of a trial run's own run and the study's run by the trial run's "
            "process (the study's pause reaches it through the study's database at once); at least 0.05."
        ),
    )
    background_checkpoints: bool = Field(
        default=True,
        description=(
            "Whether a `TrialLoop` writes each checkpoint in a thread of its own while the next "
            "epoch trains (the training thread only copies the state); false: on the training thread."
        ),
    )
    resume_deployment: str = Field(
        default="resume-study/resume-study",
        description=(
            "The control deployment (flow/deployment) whose scheduled run resumes a paused study at a "
            "set time (the UI dialog's timeout, `resume_cron`, `intermission resume --at`)."
        ),
    )
    fault: str = Field(
        default="",
        description="Fault injection for tests: `point:count` kills the process at its count-th visit of `point`.",
    )

    @field_validator("lease_seconds", mode="after")
    @classmethod
    def _at_least_one_second(cls, value: float) -> float:
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError("not a finite number")
        return max(value, 1.0)

    @field_validator("pause_poll_seconds", "trial_run_poll_seconds", mode="after")
    @classmethod
    def _at_least_a_twentieth(cls, value: float) -> float:
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError("not a finite number")
        return max(value, 0.05)


_EXAMPLES = {
    "lease_seconds": "a number of seconds, e.g. 30",
    "pause_poll_seconds": "a number of seconds, e.g. 1",
    "trial_run_poll_seconds": "a number of seconds, e.g. 10",
    "background_checkpoints": "true or false",
}


def settings() -> IntermissionSettings:
    """The settings as the environment gives them now.

    Raises:
        ConfigurationError: A variable is set to a value it cannot take; the message
            names it, echoes the value and says what it must be.
    """
    try:
        return IntermissionSettings()
    except ValidationError as e:
        error = e.errors()[0]
        field = str(error["loc"][0])
        raise ConfigurationError(
            f"INTERMISSION_{field.upper()} must be {_EXAMPLES.get(field, 'valid')}, but is "
            f"{error.get('input')!r}: fix or unset it in the worker's environment."
        ) from e
