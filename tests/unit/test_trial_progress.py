"""A trial's progress, one record whatever trains it: counted, checkpointed, and said the same way."""

from __future__ import annotations

from prefect_intermission.training.trial_progress import STATE_KEYS, TrialProgress


def test_epochs_count_the_best_metric_and_patience_in_the_trials_direction():
    progress = TrialProgress(3, max_epochs=6, direction="maximize", patience=2)
    assert progress.finish_epoch(0, 0.5, 1.23456) is True
    assert progress.finish_epoch(1, 0.7, 1.0) is True
    assert progress.finish_epoch(2, 0.6, 1.0) is False
    assert not progress.stopped_early
    assert progress.finish_epoch(3, 0.7, 1.0) is False  # not better than the best: a second one
    assert progress.stopped_early and progress.epochs_without_improvement == 2
    assert (progress.epoch, progress.best_metric, progress.last_metric) == (3, 0.7, 0.7)
    assert progress.epoch_seconds == [1.2346, 1.0, 1.0, 1.0]
    assert progress.reported == {0, 1, 2, 3}


def test_an_epoch_without_a_metric_counts_as_trained_and_is_neither_reported_nor_compared():
    progress = TrialProgress(0, max_epochs=3, patience=1)
    progress.finish_epoch(0, 1.0, 1.0)
    assert progress.finish_epoch(1, None, 1.0) is False
    assert (progress.epoch, progress.last_metric, progress.best_metric) == (1, None, 1.0)
    assert progress.reported == {0} and not progress.stopped_early


def test_a_checkpoint_takes_the_progress_and_gives_it_back():
    progress = TrialProgress(0, max_epochs=4, patience=3)
    for epoch, metric in enumerate([0.9, 0.8, 0.85]):
        progress.finish_epoch(epoch, metric, 2.0)
    state = progress.state_dict()
    assert set(state) == set(STATE_KEYS)

    resumed = TrialProgress(0, max_epochs=4, patience=3)
    resumed.reported = {0, 1, 2, 3}  # epoch 3 was reported, then a crash lost its checkpoint
    resumed.load_state_dict(state, epoch=2)
    assert (resumed.epoch, resumed.best_metric, resumed.last_metric) == (2, 0.8, 0.85)
    assert resumed.epochs_without_improvement == 1 and resumed.epoch_seconds == [2.0, 2.0, 2.0]
    assert resumed.resumed_from_epoch == 2 and resumed.lost_epochs() == [3]
    assert resumed.needs_report(3) is False and resumed.needs_report(4) is True


def test_every_trainer_says_the_same_lines():
    progress = TrialProgress(2, max_epochs=6, patience=2)
    progress.finish_epoch(0, 0.41234567, 1.0)
    assert progress.epoch_line("stored") == "Trial 2 finished epoch 1 of 6: metric 0.412346 (best 0.412346); checkpoint stored."
    assert progress.epoch_line("being stored", metric_name="val_loss").startswith("Trial 2 finished epoch 1 of 6: val_loss 0.412346")
    assert progress.continues_line() == "Trial 2 continues from its checkpoint: 1 of 6 epochs done."
    assert progress.continues_line(5) == "Trial 2 continues from its checkpoint: 1 of 6 epochs done, and 5 steps into epoch 2."
    progress.finish_epoch(1, None, 1.0)
    assert "metric nan (best 0.412346)" in progress.epoch_line("stored")
