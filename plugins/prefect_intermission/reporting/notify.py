"""Notifications through Apprise and Prefect notification blocks.

A notification that cannot be delivered is logged (without its URL: URLs hold
secrets) and retried a few times; it never raises, so it cannot stop a pause.
"""

from __future__ import annotations

import logging
import time

import apprise
from prefect.blocks.core import Block

from prefect_intermission._logging import run_logger
from prefect_intermission.blocks.pause_policy import PausePolicy
logging.getLogger("apprise").setLevel(logging.CRITICAL)  # its messages may quote URLs

_ATTEMPTS = 3


def notify(policy: PausePolicy | None, subject: str, body: str) -> bool:
    """Send `subject` and `body` to every target of the policy; True if all got it."""
    if policy is None:
        return True
    delivered = True
    for position, url in enumerate(policy.apprise_urls):
        target = apprise.Apprise()  # one per URL: a retry must not repeat what others received
        target.add(url.get_secret_value())
        delivered &= _with_retries(
            lambda t=target: bool(t.notify(title=subject, body=body)), f"apprise_urls[{position}]"
        )
    if policy.notification_block:
        def send_to_block() -> bool:
            block = Block.load(policy.notification_block)
            block.notify(body, subject)  # type: ignore[attr-defined]
            return True

        delivered &= _with_retries(send_to_block, f"block {policy.notification_block!r}")
    return delivered


def _with_retries(send: object, target: str) -> bool:
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            if send():  # type: ignore[operator]
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
