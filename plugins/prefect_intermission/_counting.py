"""Numbers as people count them: Optuna numbers epochs from 0, messages count epochs done."""

from __future__ import annotations


def epochs_done(last_epoch: int | None) -> int:
    """How many epochs are done once zero-based epoch `last_epoch` is (None: none yet)."""
    return 0 if last_epoch is None else last_epoch + 1


def position_text(last_epoch: int | None, max_epochs: int | None = None, steps_into_epoch: int | None = None) -> str:
    """Where a trial is, as every message says it: "2 of 6 epochs done", with the steps it
    trained into the next epoch: "2 of 6 epochs done, and 5 steps into epoch 3"."""
    done = epochs_done(last_epoch)
    of = f" of {max_epochs}" if max_epochs is not None else ""
    within = f", and {steps_into_epoch} steps into epoch {done + 1}" if steps_into_epoch else ""
    return f"{done}{of} epochs done{within}"
