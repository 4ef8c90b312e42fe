"""Why a study paused, in words: every pause reason's label, and the pause summary's "Why" line."""

from __future__ import annotations

import uuid

import optuna
import pytest
from prefect_intermission.flows.pause_summary import pause_summary
from prefect_intermission.pausing.reasons import PauseReason, describe
from prefect_intermission.study.state import StudyState, open_storage


def _summary(tmp_path, reason: str) -> str:
    """The pause summary of a study whose trial #0 paused after epoch 1 for `reason`."""
    storage = open_storage(f"sqlite:///{tmp_path}/studies.db")
    study = optuna.create_study(study_name="study", storage=storage, load_if_exists=True)
    state = StudyState(study, engine=storage.engine, signing_key=b"k" * 32)
    entry = state.record_pause(flow_run_id=str(uuid.uuid4()), reason=reason, trials={0: 1})
    return pause_summary(
        state, entry, n_trials=3, max_epochs=4, checkpoints=str(tmp_path / "checkpoints"),
        flow_run_id=uuid.uuid4(), how_to_resume="Run the same command again.",
    )


def _why(summary: str) -> str:
    [line] = [line for line in summary.splitlines() if line.startswith("- **Why:** ")]
    return line.removeprefix("- **Why:** ")


def test_every_pause_reason_has_its_own_label_in_words():
    labels = {reason: reason.label for reason in PauseReason}
    for reason, label in labels.items():
        assert label.strip(), reason
        assert label != reason.value, reason
        assert describe(reason.value) == label
    assert len(set(labels.values())) == len(labels), "two reasons would read the same"


@pytest.mark.parametrize("reason", [reason.value for reason in PauseReason])
def test_the_pause_summary_says_why_in_words_not_the_stored_code(tmp_path, reason):
    why = _why(_summary(tmp_path, reason))
    assert why != reason
    assert why == describe(reason)


def test_a_trial_error_pause_says_what_stopped_the_trial(tmp_path):
    summary = _summary(tmp_path, "trial-error")
    why = _why(summary)
    assert "trial-error" not in summary
    assert why.startswith("a trial stopped on an error")
    assert "#0 paused: 2 of 4 epochs done" in summary


def test_a_rule_pause_shows_the_rule_s_own_words(tmp_path):
    words = "rule: validation loss above 0.9 for 3 epochs"
    assert describe(words) == words
    assert _why(_summary(tmp_path, words)) == words
