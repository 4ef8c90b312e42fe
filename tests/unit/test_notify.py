"""Notifications go to every target at once: a hanging target delays neither the others
nor the caller beyond a bound, and the background variant does not wait at all."""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Iterator

import pytest

from deployments.local_stack import free_port
from prefect_intermission import PausePolicy
from prefect_intermission.reporting import notify as notify_module
from prefect_intermission.reporting.notify import notify, notify_in_background
from tests.e2e.webhook import Webhook, hanging_endpoint, webhook

SECRET = "s3cr3t-hook-token"
LOGGER = "prefect_intermission.reporting.notify"


@pytest.fixture(autouse=True)
def _threads_finish() -> Iterator[None]:
    """After each test (and after its hanging server closed), its notification threads end:
    their late log lines must not land in the next test's log."""
    yield
    for thread in _notify_threads():
        thread.join(timeout=15)
    assert not _notify_threads(), "a notification thread kept trying after its target went away"


@pytest.fixture
def hook() -> Iterator[Webhook]:
    with webhook() as served:
        yield served


@pytest.fixture
def hanging_url() -> Iterator[str]:
    """A json:// URL whose server accepts connections and never answers (with a secret in it)."""
    with hanging_endpoint(f"hang/{SECRET}-hanging") as url:
        yield url


def _arrival(hook: Webhook, subject: str, since: float, timeout: float) -> float | None:
    """Seconds from `since` until `hook` got a message titled `subject`; None if not within `timeout`."""
    while time.monotonic() - since < timeout:
        if hook.messages(subject):
            return time.monotonic() - since
        time.sleep(0.01)
    return None


def _notify_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("intermission-notify")]


def test_a_hanging_target_delays_neither_the_other_target_nor_the_caller_beyond_the_bound(
    hook, hanging_url, caplog
):
    caplog.set_level(logging.WARNING, logger=LOGGER)
    policy = PausePolicy(apprise_urls=[hanging_url, hook.url(f"hooks/{SECRET}")])
    result: list[bool] = []
    caller = threading.Thread(
        target=contextvars.copy_context().run,
        args=(lambda: result.append(notify(policy, "Study s paused", "paused body")),), daemon=True,
    )
    started = time.monotonic()
    caller.start()
    arrived = _arrival(hook, "Study s paused", started, timeout=3)
    caller.join(timeout=notify_module._WAIT + 5)
    returned = time.monotonic() - started
    print(f"local target got the message after {arrived} s; notify returned after {returned:.2f} s")

    assert arrived is not None and arrived < 3, "the working target waited on the hanging one"
    assert not caller.is_alive() and returned < notify_module._WAIT + 1.5, "notify waited past its bound"
    assert result == [False], "the hanging target counted as delivered"
    assert [m["path"] for m in hook.received] == [f"/hooks/{SECRET}"], "a retry repeated a delivered message"
    assert "apprise_urls[0] not delivered (attempt 1 of 3)" in caplog.text, "an attempt took over 5 s"
    assert "apprise_urls[0] not confirmed within 8 s" in caplog.text
    assert "apprise_urls[1]" not in caplog.text
    assert SECRET not in caplog.text and hanging_url.split("/")[2] not in caplog.text
    assert all(t.daemon for t in _notify_threads()), "a notification thread would keep the process alive"


def test_notify_in_background_returns_at_once_and_delivers(hook, hanging_url, caplog):
    caplog.set_level(logging.WARNING, logger=LOGGER)
    policy = PausePolicy(apprise_urls=[hanging_url, hook.url(f"hooks/{SECRET}")])
    started = time.monotonic()
    assert notify_in_background(policy, "Study s resumed", "resumed body") is None
    returned = time.monotonic() - started
    arrived = _arrival(hook, "Study s resumed", started, timeout=3)
    print(f"notify_in_background returned after {returned:.3f} s; message arrived after {arrived} s")

    assert returned < 0.5
    assert arrived is not None and arrived < 3
    assert hook.messages("Study s resumed")[0]["message"] == "resumed body"
    assert all(t.daemon for t in _notify_threads())
    assert SECRET not in caplog.text


def test_working_targets_are_confirmed_quickly(hook):
    policy = PausePolicy(apprise_urls=[hook.url(f"one/{SECRET}"), hook.url(f"two/{SECRET}")])
    started = time.monotonic()
    delivered = notify(policy, "Study s completed", "completed body")
    returned = time.monotonic() - started
    print(f"notify with two working targets returned {delivered} after {returned:.3f} s")

    assert delivered is True
    assert returned < 2
    assert sorted(m["path"] for m in hook.received) == [f"/one/{SECRET}", f"/two/{SECRET}"]


def test_a_refused_target_is_tried_three_times_before_notify_returns(hook, caplog):
    caplog.set_level(logging.WARNING, logger=LOGGER)
    refused = f"json://127.0.0.1:{free_port()}/down/{SECRET}"
    policy = PausePolicy(apprise_urls=[hook.url("up"), refused])
    started = time.monotonic()
    assert notify(policy, "Study s failed", "failed body") is False
    returned = time.monotonic() - started
    print(f"notify with a refused target returned after {returned:.2f} s")

    assert returned < notify_module._WAIT
    for attempt in (1, 2, 3):
        assert f"Notification to apprise_urls[1] not delivered (attempt {attempt} of 3)" in caplog.text
    assert "apprise_urls[0]" not in caplog.text and SECRET not in caplog.text
    assert len(hook.messages("Study s failed")) == 1


def test_background_threads_carry_the_callers_context(monkeypatch):
    marker: contextvars.ContextVar[str] = contextvars.ContextVar("marker", default="lost")
    seen: list[str] = []
    logged = threading.Event()

    def recording_logger(fallback: str) -> logging.Logger:
        seen.append(marker.get())
        logged.set()
        return logging.getLogger(fallback)

    monkeypatch.setattr(notify_module, "run_logger", recording_logger)
    marker.set("the flow run's context")
    notify_in_background(PausePolicy(apprise_urls=[f"json://127.0.0.1:{free_port()}/down"]), "s", "b")
    assert logged.wait(5), "the undelivered notification was not logged"
    assert seen[0] == "the flow run's context"


def test_timeouts_are_short_unless_the_url_sets_its_own():
    (default,) = notify_module._apprise_target("json://127.0.0.1:9/x")
    assert (default.socket_connect_timeout, default.socket_read_timeout) == (5.0, 5.0)
    (custom,) = notify_module._apprise_target("json://127.0.0.1:9/x?RTO=12&cto=2")
    assert (custom.socket_connect_timeout, custom.socket_read_timeout) == (2.0, 12.0)


def test_no_policy_means_nothing_to_send():
    assert notify(None, "s", "b") is True
    assert notify_in_background(None, "s", "b") is None
