"""The `INTERMISSION_*` environment variables, read through `IntermissionSettings`."""

from __future__ import annotations

import os

import pytest

from prefect_intermission.errors import ConfigurationError
from prefect_intermission.settings import IntermissionSettings, settings
from prefect_intermission.study.leases import lease_seconds_from_env


@pytest.fixture(autouse=True)
def no_intermission_variables(monkeypatch):
    """Each test starts from an environment without `INTERMISSION_*` variables."""
    for name in [n for n in os.environ if n.upper().startswith("INTERMISSION_")]:
        monkeypatch.delenv(name)


def test_defaults():
    assert settings() == IntermissionSettings(
        lease_seconds=30.0, pause_poll_seconds=1.0, trial_run_poll_seconds=10.0, fault="", background_checkpoints=True,
        resume_deployment="resume-study/resume-study",
    )
    assert (lease_seconds_from_env(), settings().pause_poll_seconds) == (30.0, 1.0)


@pytest.mark.parametrize(
    ("variable", "value", "field", "expected"),
    [
        ("INTERMISSION_LEASE_SECONDS", "12.5", "lease_seconds", 12.5),
        ("INTERMISSION_PAUSE_POLL_SECONDS", "0.2", "pause_poll_seconds", 0.2),
        ("INTERMISSION_TRIAL_RUN_POLL_SECONDS", "30", "trial_run_poll_seconds", 30.0),
        ("INTERMISSION_FAULT", "checkpoint.write:3", "fault", "checkpoint.write:3"),
        ("INTERMISSION_BACKGROUND_CHECKPOINTS", "false", "background_checkpoints", False),
        ("INTERMISSION_RESUME_DEPLOYMENT", "resume-study/nightly", "resume_deployment", "resume-study/nightly"),
    ],
)
def test_a_variable_overrides_its_default(monkeypatch, variable, value, field, expected):
    monkeypatch.setenv(variable, value)
    assert getattr(settings(), field) == expected


def test_the_package_reads_the_variables_through_the_settings(monkeypatch):
    monkeypatch.setenv("INTERMISSION_LEASE_SECONDS", "12")
    monkeypatch.setenv("INTERMISSION_PAUSE_POLL_SECONDS", "0.5")
    assert (lease_seconds_from_env(), settings().pause_poll_seconds) == (12.0, 0.5)


@pytest.mark.parametrize(
    ("variable", "value", "field", "expected"),
    [
        ("INTERMISSION_LEASE_SECONDS", "0.2", "lease_seconds", 1.0),
        ("INTERMISSION_LEASE_SECONDS", "-5", "lease_seconds", 1.0),
        ("INTERMISSION_LEASE_SECONDS", "1", "lease_seconds", 1.0),
        ("INTERMISSION_PAUSE_POLL_SECONDS", "0.01", "pause_poll_seconds", 0.05),
        ("INTERMISSION_PAUSE_POLL_SECONDS", "0", "pause_poll_seconds", 0.05),
        ("INTERMISSION_PAUSE_POLL_SECONDS", "0.05", "pause_poll_seconds", 0.05),
        ("INTERMISSION_TRIAL_RUN_POLL_SECONDS", "0", "trial_run_poll_seconds", 0.05),
    ],
)
def test_too_small_a_time_is_raised_to_the_least_allowed(monkeypatch, variable, value, field, expected):
    monkeypatch.setenv(variable, value)
    assert getattr(settings(), field) == expected


@pytest.mark.parametrize(
    ("variable", "value", "must_be"),
    [
        ("INTERMISSION_PAUSE_POLL_SECONDS", "fast", "a number of seconds, e.g. 1"),
        ("INTERMISSION_PAUSE_POLL_SECONDS", "nan", "a number of seconds, e.g. 1"),
        ("INTERMISSION_LEASE_SECONDS", "30s", "a number of seconds, e.g. 30"),
        ("INTERMISSION_LEASE_SECONDS", "inf", "a number of seconds, e.g. 30"),
    ],
)
def test_a_bad_value_is_a_configuration_error_naming_the_variable_and_value(monkeypatch, variable, value, must_be):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError) as raised:
        settings()
    assert str(raised.value) == (
        f"{variable} must be {must_be}, but is {value!r}: fix or unset it in the worker's environment."
    )


def test_an_empty_variable_counts_as_unset(monkeypatch):
    monkeypatch.setenv("INTERMISSION_LEASE_SECONDS", "")
    monkeypatch.setenv("INTERMISSION_PAUSE_POLL_SECONDS", "")
    assert (settings().lease_seconds, settings().pause_poll_seconds) == (30.0, 1.0)


def test_other_intermission_variables_are_left_alone(monkeypatch):
    monkeypatch.setenv("INTERMISSION_TEST_EPOCH_SECONDS", "not for the package")
    assert settings() == IntermissionSettings()
