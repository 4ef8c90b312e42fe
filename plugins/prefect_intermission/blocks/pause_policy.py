"""The pause policy block: how a study pauses, who hears of it, and when it resumes.

Edit it in the Prefect UI (Blocks page) or in code, and pass its name to the study
flow's `pause_policy` parameter.
"""

from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from prefect.blocks.core import Block
from pydantic import ConfigDict, Field, SecretStr, field_validator

from prefect_intermission.blocks._schema import closed_block_schema


def _next_cron_time(expression: str, zone: str, after: datetime) -> datetime:
    """The first time after `after` that matches `expression` in time zone `zone` (as UTC),
    as Prefect's deployment schedules read it."""
    from prefect_intermission._prefect_internals import next_cron_time  # Prefect's server code: not at import

    return next_cron_time(expression, zone, after)


class PausePolicy(Block):
    """How a pausable study pauses and resumes: notifications, resume schedule, pause
    windows and how long a paused study may wait.

    Where checkpoints go is the study's `checkpoints` and `keep_checkpoints` parameters.
    Policies saved when they held it still load, and a study honours their location
    with a deprecation warning until it is cleared here.

    Args:
        checkpoints: Deprecated; set the study's `checkpoints` parameter instead.
        keep_checkpoints: Deprecated; set the study's `keep_checkpoints` parameter instead.
        apprise_urls: Apprise URLs notified on pause, resume, completion and failure.
        notification_block: A Prefect notification block, as "block-type-slug/name".
        resume_cron: When a paused study resumes by itself, as a cron expression.
        timezone: The time zone of `resume_cron` and `pause_crons`, and of the times in pause
            summaries and notifications.
        pause_crons: Times when a running study pauses by itself, as cron expressions.
        pause_file: A file whose creation pauses the study.
        abandon_after_hours: How long a paused study may wait before it counts as abandoned.
        ignore_ui_timeout: Whether the timeout typed in the UI's pause dialog is ignored.

    Example:
        ```python
        from prefect_intermission import PausePolicy

        policy = PausePolicy.load("BLOCK_NAME")
        print(policy.next_resume_time())
        ```
    """

    # Validation errors must not echo what was typed: Apprise URLs hold secrets.
    model_config = ConfigDict(hide_input_in_errors=True, json_schema_extra=closed_block_schema)

    _block_type_name = "Pause Policy"
    # The project has no hosted docs; its documentation site's guide (docs/guides/notifications.md,
    # `make docs-serve`) documents this block. Prefect's page on
    # blocks explains how blocks are created, edited in the UI and loaded.
    _documentation_url = "https://docs.prefect.io/v3/concepts/blocks"

    checkpoints: str | None = Field(
        default=None,
        description=(
            "Deprecated: leave empty and set the study's `checkpoints` parameter. A location saved "
            "here still overrides it, with a warning, so existing studies find their checkpoints."
        ),
    )
    keep_checkpoints: int = Field(
        default=2, ge=1,
        description="Deprecated: set the study's `keep_checkpoints` parameter. Used only with `checkpoints` above.",
    )
    apprise_urls: list[SecretStr] = Field(
        default_factory=list,
        description="Apprise URLs (Slack, e-mail, webhooks...) notified on pause, resume, completion and failure.",
    )
    notification_block: str | None = Field(
        default=None,
        description='A Prefect notification block to notify as well, as "block-type-slug/block-name".',
    )
    resume_cron: str | None = Field(
        default=None,
        description='When a paused study resumes by itself, e.g. "0 22 * * *"; empty: only when resumed by hand.',
    )
    timezone: str = Field(
        default="UTC",
        description=(
            "The IANA time zone of the cron expressions and of the times in pause summaries and "
            "notifications, e.g. Europe/Berlin."
        ),
    )
    pause_crons: list[str] = Field(
        default_factory=list,
        description='Times when a running study pauses by itself, e.g. "0 8 * * 1-5" for 08:00 on weekdays.',
    )
    pause_file: str | None = Field(
        default=None, description="A file whose creation pauses the running study at its next epoch boundary."
    )
    abandon_after_hours: float | None = Field(
        default=None, gt=0, description="Hours a paused study may wait before it counts as abandoned; empty: no limit."
    )
    ignore_ui_timeout: bool = Field(
        default=False,
        description=(
            "Ignore the timeout typed in the Prefect UI's pause dialog: the study then waits for "
            "Resume or `resume_cron`. By default it resumes by itself once that timeout passes."
        ),
    )

    @field_validator("timezone")
    @classmethod
    def _known_time_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as e:
            raise ValueError(
                f"timezone must be an IANA time zone such as 'Europe/Berlin' or 'UTC', but got {value!r}."
            ) from e
        return value

    @field_validator("resume_cron")
    @classmethod
    def _valid_resume_cron(cls, value: str | None) -> str | None:
        return None if value in (None, "") else _checked_cron(value, "resume_cron")

    @field_validator("pause_crons")
    @classmethod
    def _valid_pause_crons(cls, value: list[str]) -> list[str]:
        return [_checked_cron(v, "pause_crons") for v in value]

    @field_validator("apprise_urls")
    @classmethod
    def _valid_apprise_urls(cls, value: list[SecretStr]) -> list[SecretStr]:
        if not value:
            return value
        import apprise  # only with URLs to check: a worker loading the block types skips it

        for position, url in enumerate(value):
            if not apprise.Apprise().add(url.get_secret_value()):
                raise ValueError(  # the URL itself is a secret: say which one, not what it is
                    f"apprise_urls[{position}] is not a URL Apprise can send to; see "
                    "https://github.com/caronc/apprise/wiki for the formats (e.g. json://host/path)."
                )
        return value

    def resume_time(self, ui_timeout: datetime | None, after: datetime | None = None) -> datetime | None:
        """When a paused study resumes by itself: the UI dialog's timeout (unless ignored) or
        the next `resume_cron` time, whichever comes first; None: only when resumed by hand."""
        times = [self.next_resume_time(after)]
        if not self.ignore_ui_timeout:
            times.append(ui_timeout)
        return min((t for t in times if t is not None), default=None)

    def next_resume_time(self, after: datetime | None = None) -> datetime | None:
        """When a study paused at `after` (default: now) resumes by itself, in UTC; None: never."""
        if not self.resume_cron:
            return None
        return _next_cron_time(self.resume_cron, self.timezone, after or datetime.now(timezone.utc))

    def next_pause_time(self, after: datetime | None = None) -> datetime | None:
        """The next time a running study pauses by itself, in UTC; None: never."""
        moment = after or datetime.now(timezone.utc)
        times = [_next_cron_time(c, self.timezone, moment) for c in self.pause_crons]
        return min(times) if times else None


def _checked_cron(expression: str, field: str) -> str:
    """`expression`, if Prefect's schedules accept it and it names times, not every second of them."""
    from prefect.client.schemas.schedules import CronSchedule

    example = f"{field} must be a cron expression such as '0 22 * * *' (minute hour day month weekday)"
    try:
        CronSchedule(cron=expression)
        _next_cron_time(expression, "UTC", datetime.now(timezone.utc))
    except ValueError as e:
        raise ValueError(f"{example}, as Prefect's schedules read it, but got {expression!r}: {e}") from e
    fields = expression.split()
    if len(fields) == 6 and fields[0] != "*":
        # Prefect reads six fields as minute ... weekday, then seconds; cronsim, which read them
        # before, as seconds first. Refused rather than read differently from what was meant.
        raise ValueError(
            f"{field} {expression!r} has six fields, which Prefect's schedules read with seconds "
            f"last (minute hour day month weekday second), where earlier releases read seconds "
            f"first. Write seconds last with '*' minutes, e.g. '* * * * * */30' for every half "
            f"minute, or leave the seconds out: '{' '.join(fields[1:])}' if the first field was seconds."
        )
    return expression
