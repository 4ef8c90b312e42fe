"""Numbers as people count them: Optuna numbers epochs from 0, messages count epochs done."""

from __future__ import annotations


def epochs_done(last_epoch: int | None) -> int:
    """How many epochs are done once zero-based epoch `last_epoch` is (None: none yet)."""
    return 0 if last_epoch is None else last_epoch + 1
