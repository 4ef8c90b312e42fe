"""How times read: in the local time zone (TZ decides) or a named one, to the second, zone shown."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timezone

import pytest

from prefect_intermission._times import shown_time

WINTER = datetime(2026, 12, 7, 20, 30, 5, 987654, tzinfo=timezone.utc)
SUMMER = datetime(2026, 7, 1, 12, 0, 0, 1, tzinfo=timezone.utc)


@pytest.fixture
def new_york(monkeypatch) -> Iterator[None]:
    """This process's local time zone is New York's for the test, as `TZ=America/New_York` sets it."""
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_a_time_shows_in_the_local_time_zone_to_the_second(new_york):
    assert shown_time(WINTER) == "2026-12-07 15:30:05 EST"
    assert shown_time(SUMMER) == "2026-07-01 08:00:00 EDT"
    assert shown_time(WINTER.isoformat()) == "2026-12-07 15:30:05 EST"  # as the study stores it


def test_a_named_time_zone_wins_over_the_local_one(new_york):
    assert shown_time(WINTER, "Europe/Berlin") == "2026-12-07 21:30:05 CET"
    assert shown_time(WINTER, "UTC") == "2026-12-07 20:30:05 UTC"
    assert shown_time(WINTER, "Asia/Kolkata") == "2026-12-08 02:00:05 IST"


def test_a_time_without_an_offset_is_local_time_as_optuna_records_it(new_york):
    assert shown_time(datetime(2026, 12, 7, 15, 30, 5, 500)) == "2026-12-07 15:30:05 EST"


def test_a_stored_time_that_does_not_parse_is_shown_as_it_is():
    assert shown_time("yesterday") == "yesterday"
