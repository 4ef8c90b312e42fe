"""Which checkpoints stay listed after a new one: the last `keep_last`, the best, the mid-epoch
one until anything later, and nothing from an attempt that was cut off."""

from __future__ import annotations

from prefect_intermission.training.retention import retained


def _e(epoch: int, **marks) -> dict:
    return {"epoch": epoch, "file": f"epoch-{epoch:05d}{'-mid' if marks.get('mid_epoch') else ''}.pt", **marks}


def test_the_last_epochs_and_the_best_one_are_kept():
    listed = [_e(0), _e(1, best=True), _e(2)]
    assert retained(listed, _e(3), keep_last=2) == [_e(1, best=True), _e(2), _e(3)]
    assert retained(listed, _e(3, best=True), keep_last=1) == [_e(3, best=True)], "only the newest best is marked"


def test_a_checkpoint_within_an_epoch_is_kept_until_a_later_one_supersedes_it():
    within = _e(2, mid_epoch=True)
    assert retained([_e(0), _e(1)], within, keep_last=1) == [_e(1), within]
    assert retained([_e(0), _e(1), within], _e(2), keep_last=1) == [_e(2)]


def test_checkpoints_of_an_attempt_that_was_cut_off_are_dropped():
    # Continued from epoch 1's checkpoint after epochs 2 and 3 of a lost attempt were listed.
    assert retained([_e(0), _e(1), _e(2), _e(3)], _e(2), keep_last=3) == [_e(0), _e(1), _e(2)]
