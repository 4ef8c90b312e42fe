"""Notifications through Apprise and Prefect notification blocks.

Every target (each Apprise URL, the notification block) is sent on a thread of its
own, so a slow or hanging target never delays another, and each attempt has a short
timeout. `notify` waits a bounded time for them all; `notify_in_background` does not
wait at all. A notification that cannot be delivered is logged (without its URL:
URLs hold secrets) and retried a few times; it never raises, so it cannot stop a pause.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING
from uuid import UUID

from prefect.blocks.core import Block
from prefect.client.schemas.objects import FlowRun
from prefect.states import State

from prefect_intermission._logging import run_logger
from prefect_intermission._threads import ContextThread
from prefect_intermission.blocks.pause_policy import PausePolicy

if TYPE_CHECKING:
    import apprise

logging.getLogger("apprise").setLevel(logging.CRITICAL)  # its messages may quote URLs

_ATTEMPTS = 3
# Seconds an attempt may take to connect, and to get an answer, unless the URL sets its
# own (Apprise's `cto` and `rto` arguments). A service that works answers in well under
# a second; a hanging one fails each attempt after 5 s instead of Apprise's 4 to 30 s
# per plugin (15 s to connect for e-mail).
_CONNECT_TIMEOUT = 5.0
_READ_TIMEOUT = 5.0
# Seconds `notify` waits for all targets together: a working target's slowest attempt
# (5 s) with room to spare, and all three attempts of one that fails at once (1.5 s of
# backoff). A target still trying then goes on in the background, unconfirmed.
_WAIT = 8.0


class _Delivery:
    """One target's delivery, on its own daemon thread carrying the caller's context."""

    def __init__(self, send: Callable[[], bool], target: str) -> None:
        self.target = target
        self.delivered = False
        self.done = threading.Event()
        self._send = send
        self._thread = ContextThread(self._run, name=f"intermission-notify {target}")
        self._thread.start()

    def _run(self) -> None:
        try:
            self.delivered = _with_retries(self._send, self.target)
        finally:
            self.done.set()


def notify(policy: PausePolicy | None, subject: str, body: str) -> bool:
    """Send `subject` and `body` to every target of the policy at once; True if all got it.

    Waits at most `_WAIT` seconds in all; a target not done by then keeps trying in the
    background and counts as not delivered.
    """
    deliveries = _start(policy, subject, body)
    deadline = time.monotonic() + _WAIT
    delivered = True
    for delivery in deliveries:
        if delivery.done.wait(max(0.0, deadline - time.monotonic())):
            delivered &= delivery.delivered
        else:
            run_logger(__name__).warning(
                "Notification to %s not confirmed within %.0f s; it is still being tried in the background.",
                delivery.target, _WAIT,
            )
            delivered = False
    return delivered


def notify_in_background(policy: PausePolicy | None, subject: str, body: str) -> None:
    """Send like `notify`, without waiting: for messages that must not hold up training."""
    _start(policy, subject, body)


def _start(policy: PausePolicy | None, subject: str, body: str) -> list[_Delivery]:
    if policy is None:
        return []
    deliveries = []
    for position, url in enumerate(policy.apprise_urls):
        send = _apprise_send(url.get_secret_value(), subject, body)
        deliveries.append(_Delivery(send, f"apprise_urls[{position}]"))
    if policy.notification_block:
        block_name = policy.notification_block

        def send_to_block() -> bool:
            block = Block.load(block_name)
            block.notify(body, subject)  # type: ignore[attr-defined]
            return True

        deliveries.append(_Delivery(send_to_block, f"block {block_name!r}"))
    return deliveries


def _apprise_send(url: str, subject: str, body: str) -> Callable[[], bool]:
    """One attempt at sending to `url`; the Apprise object is made on the delivery's thread."""
    import apprise  # here, not on the delivery's thread: only a process that notifies loads it

    target: apprise.Apprise | None = None

    def send() -> bool:
        nonlocal target
        if target is None:
            target = _apprise_target(url)  # one per URL: a retry must not repeat what others received
        return bool(target.notify(title=subject, body=body))

    return send


def _apprise_target(url: str) -> apprise.Apprise:
    """An Apprise object for `url`, with short timeouts where the URL does not set its own."""
    import apprise

    target = apprise.Apprise()
    target.add(url)
    # Set on the loaded plugin rather than added to the URL: some services' native URLs
    # (https://discord.com/api/webhooks/...) are recognised by patterns a new query could break.
    _, _, query = url.partition("?")
    given = {part.partition("=")[0].strip().lower() for part in re.split(r"[&;]", query)}
    for server in target:
        if "cto" not in given:
            server.socket_connect_timeout = _CONNECT_TIMEOUT
        if "rto" not in given:
            server.socket_read_timeout = _READ_TIMEOUT
    return target


def _with_retries(send: Callable[[], bool], target: str) -> bool:
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            if send():
                return True
            problem = "the service did not accept it"
        except Exception as e:  # noqa: BLE001 - a notification must never stop a pause
            problem = type(e).__name__
        run_logger(__name__).warning(
            "Notification to %s not delivered (attempt %d of %d): %s.", target, attempt, _ATTEMPTS, problem
        )
        if attempt < _ATTEMPTS:
            time.sleep(0.5 * attempt)
    return False


_after_the_run: dict[UUID, tuple[PausePolicy | None, str, str]] = {}


def notify_after_the_run(flow_run_id: UUID, policy: PausePolicy | None, subject: str, body: str) -> None:
    """Hold a notification until flow run `flow_run_id` has reached its final state.

    The completion message goes out only once the run is Completed, so that nothing the
    targets do (one may hang for seconds) keeps the run open to a late pause.
    """
    _after_the_run[flow_run_id] = (policy, subject, body)


def send_held_notification(flow: object, flow_run: FlowRun, state: State) -> None:
    """A flow hook (`on_completion`): send what `notify_after_the_run` held for this run."""
    if (held := _after_the_run.pop(flow_run.id, None)) is not None:
        notify(*held)
