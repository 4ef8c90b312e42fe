"""What a study's run decides, without a server: complete, pause (and when it resumes by
itself), fail, Stop & Save, and continue. The flow run is kept in memory (`InMemoryRunLink`,
set to Paused as the UI's Pause button sets it); trials end as a script says
(`ScriptedExecutor`); the study is a real Optuna study on SQLite."""

from __future__ import annotations

import json
import logging
from datetime import datetime

import optuna
import pytest
from optuna.trial import TrialState
from prefect.exceptions import Pause
from prefect.states import Paused, Running

from prefect_intermission.blocks.pause_policy import PausePolicy
from prefect_intermission.control.stopping import request_stop
from prefect_intermission.errors import IntermissionError
from prefect_intermission.flows.run_link import InMemoryRunLink
from prefect_intermission.flows.study_run import StudyRun
from prefect_intermission.pausing.reasons import PauseReason
from prefect_intermission.pausing.run_states import FLOW_PAUSE_KEY_PREFIX
from prefect_intermission.reporting.progress import StudyProgress
from prefect_intermission.study.attempt import TrialOutcome
from prefect_intermission.study.config import StudyConfig
from prefect_intermission.study.leases import StudyLease
from prefect_intermission.study.scheduler import TrialScheduler
from prefect_intermission.study.state import TRIAL_STATUS_ATTR, StudyState, open_storage
from prefect_intermission.training.pause_signal import PauseSignal
from prefect_intermission.training.store import CheckpointStore
from tests.e2e.studies import read_in
from tests.unit.scripted import Script, ScriptedExecutor, completes

N_TRIALS = 3


@pytest.fixture
def state(tmp_path) -> StudyState:
    storage = open_storage(f"sqlite:///{tmp_path}/s.db")
    study = optuna.create_study(study_name="s", storage=storage, sampler=optuna.samplers.RandomSampler(seed=0))
    return StudyState(study, engine=storage.engine, signing_key=b"k" * 32)


def _study_run(
    state, tmp_path, link: InMemoryRunLink, script: Script, *, signal: PauseSignal | None = None,
    policy: PausePolicy | None = None,
) -> StudyRun:
    """One execution of the study's run, built as `optimize_study` builds it, on `link`."""
    config = StudyConfig(study_name="s", objective="m:f", n_trials=N_TRIALS, max_concurrent_trials=1)
    store, signal = CheckpointStore(str(tmp_path / "ckpt")), signal if signal is not None else PauseSignal()
    progress = StudyProgress("s", n_trials=N_TRIALS, max_epochs=config.training.max_epochs, finished=state.finished_count())
    scheduler = TrialScheduler(
        state, ScriptedExecutor(state, script, signal=signal), config=config, checkpoints=store,
        pause_signal=signal, progress=progress,
    )
    return StudyRun(
        config, state=state, store=store, signal=signal, link=link, progress=progress, policy=policy,
        lease=StudyLease(state.engine, "s", "test"), scheduler=scheduler, logger=logging.getLogger("study-run"),
    )


def _paused_from_the_ui(link: InMemoryRunLink, signal: PauseSignal, *, number: int = 1, timeout_seconds: int = 900) -> Script:
    """Trials complete, but the UI's Pause is clicked (with `timeout_seconds` in its dialog)
    while trial `number` starts; it stops, before its first checkpoint, once the study has seen it."""

    def script(trial: optuna.Trial, attempt: int) -> TrialOutcome:
        if trial.number != number or attempt > 0:
            return completes(trial, attempt)
        link.set_state(Paused(timeout_seconds=timeout_seconds))
        assert signal.wait(10), "the study did not see the UI's pause"
        return TrialOutcome(trial.number, "paused", epoch=None)

    return script


def _ui_pause_timeout(link: InMemoryRunLink) -> datetime:
    return next(s for s in link.states if s.name == "Paused").state_details.pause_timeout


def test_every_trial_finished_completes_with_the_best_trial(state, tmp_path):
    link = InMemoryRunLink()
    result = _study_run(state, tmp_path, link, completes).execute()
    assert result["status"] == "completed" and result["finished_trials"] == N_TRIALS
    assert result["best_trial"] == 0 and result["best_value"] == 0.0  # value = number, minimised
    assert [what for what, _ in link.events] == ["completed"]
    assert link.state.is_running(), "the engine records the completion, not the study"
    [table] = link.artifact_data("trials")
    assert [row["trial"] for row in json.loads(table)] == [0, 1, 2]


def test_a_ui_pause_suspends_the_run_without_expiry_and_schedules_the_dialogs_resume(state, tmp_path):
    link, signal = InMemoryRunLink(), PauseSignal()
    with pytest.raises(Pause):
        _study_run(state, tmp_path, link, _paused_from_the_ui(link, signal), signal=signal).execute()

    suspended = link.state
    assert suspended.name == "Suspended" and suspended.state_details.pause_key.startswith(FLOW_PAUSE_KEY_PREFIX)
    assert suspended.state_details.pause_timeout is None, "Prefect must never fail the paused run"
    ui_timeout = _ui_pause_timeout(link)
    assert [r.at for r in link.scheduled_resumes] == [ui_timeout]  # what the dialog promised
    trials = state.study.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.RUNNING], "trial 2 never started"
    assert trials[1].system_attrs[TRIAL_STATUS_ATTR] == "paused"
    [(what, payload)] = link.events
    assert (what, payload["reason"], payload["resume_at"]) == ("paused", PauseReason.UI, ui_timeout.isoformat())
    [summary] = link.artifact_data("pause")
    assert "1 of 3 finished; #1 not started" in summary
    resumes = f"by itself at {read_in('UTC', ui_timeout)},"  # no pause policy: UTC
    assert resumes in summary and f"intermission resume {link.flow_run.id}" in summary
    # The UI's pause (which expires), taken over at once by one that does not; Running again
    # once every trial has stopped, then suspended by the study.
    assert [s.name for s in link.states] == ["Running", "Paused", "Suspended", "Running", "Suspended"]


def test_the_pause_summary_shows_times_in_the_policy_s_time_zone(state, tmp_path):
    link, signal = InMemoryRunLink(), PauseSignal()
    run = _study_run(
        state, tmp_path, link, _paused_from_the_ui(link, signal), signal=signal,
        policy=PausePolicy(timezone="America/New_York"),
    )
    with pytest.raises(Pause):
        run.execute()
    [summary] = link.artifact_data("pause")
    [entry] = state.pause_history()
    assert f"- **When:** {read_in('America/New_York', entry['paused_at'])}\n" in summary, summary
    resumes = read_in("America/New_York", _ui_pause_timeout(link))
    assert f"- **Resumes:** by itself at {resumes}, or sooner" in summary, summary


def test_a_policy_that_ignores_the_dialogs_timeout_waits_for_resume(state, tmp_path):
    link, signal = InMemoryRunLink(), PauseSignal()
    run = _study_run(
        state, tmp_path, link, _paused_from_the_ui(link, signal), signal=signal,
        policy=PausePolicy(ignore_ui_timeout=True),
    )
    with pytest.raises(Pause):
        run.execute()
    assert link.state.name == "Suspended" and link.scheduled_resumes == []
    assert link.events[-1][1]["resume_at"] is None


def test_resumed_before_its_time_the_run_drops_the_scheduled_resume_and_continues_the_paused_trial(state, tmp_path):
    link, signal = InMemoryRunLink(), PauseSignal()
    with pytest.raises(Pause):
        _study_run(state, tmp_path, link, _paused_from_the_ui(link, signal), signal=signal).execute()
    assert len(link.scheduled_resumes) == 1

    link.set_state(Running())  # Resume: the run executes again from the top
    again = _study_run(state, tmp_path, link, completes)
    result = again.execute()
    assert link.scheduled_resumes == [], "the resume scheduled for the dialog's time would find nothing to do"
    assert again.scheduler.executor.started == [1, 2], "the paused trial first, under its own number"
    assert [what for what, _ in link.events] == ["paused", "resumed", "completed"]
    assert link.events[1][1] == {"continuing": [1]}
    assert result["finished_trials"] == N_TRIALS


def test_a_pause_that_arrives_after_the_last_trial_is_carried_out_too(state, tmp_path):
    link = InMemoryRunLink()

    def paused_as_the_last_trial_ends(trial: optuna.Trial, attempt: int) -> TrialOutcome:
        if trial.number == N_TRIALS - 1:
            link.set_state(Paused(timeout_seconds=300))
        return completes(trial, attempt)

    with pytest.raises(Pause):
        _study_run(state, tmp_path, link, paused_as_the_last_trial_ends).execute()
    assert link.state.name == "Suspended", "left Paused, Prefect would fail the run after 300 s"
    assert state.finished_count() == N_TRIALS and state.pause_history()[-1]["trials"] == {}


def test_outside_a_deployment_a_pause_ends_the_run_paused_and_says_how_to_continue(state, tmp_path):
    link, signal = InMemoryRunLink(deployed=False), PauseSignal()
    ended = _study_run(state, tmp_path, link, _paused_from_the_ui(link, signal), signal=signal).execute()
    assert ended.name == "Paused" and ended.is_completed()
    assert "not part of a deployment" in ended.message and "study_name='s'" in ended.message
    assert link.scheduled_resumes == []


def test_a_failed_trial_pauses_the_others_and_says_what_failed_and_how_to_continue(state, tmp_path):
    def fails(trial: optuna.Trial, attempt: int) -> TrialOutcome:
        if trial.number == 1:
            return TrialOutcome(1, "failed", epoch=0, error="RuntimeError: boom")
        return completes(trial, attempt)

    link = InMemoryRunLink()
    with pytest.raises(IntermissionError, match=r"Trial 1 of study 's' failed: RuntimeError: boom\..*same study_name"):
        _study_run(state, tmp_path, link, fails).execute()
    assert state.pause_history()[-1]["reason"] == PauseReason.TRIAL_FAILED
    [table] = link.artifact_data("trials")
    assert "failed" in table


def test_stop_and_save_records_the_unfinished_trial_pruned_and_completes(state, tmp_path):
    link, signal = InMemoryRunLink(), PauseSignal()

    def stopped_during_trial_1(trial: optuna.Trial, attempt: int) -> TrialOutcome:
        if trial.number != 1:
            return completes(trial, attempt)
        request_stop(f"sqlite:///{tmp_path}/s.db", "s", by="test")  # `intermission stop s`
        assert signal.wait(10), "the study did not see the stop request"
        return TrialOutcome(1, "paused", epoch=None, stopping=True)

    result = _study_run(state, tmp_path, link, stopped_during_trial_1, signal=signal).execute()
    assert result["stopped"] and result["finished_trials"] == 2
    assert [t.state for t in state.study.get_trials(deepcopy=False)] == [TrialState.COMPLETE, TrialState.PRUNED]
    assert [what for what, _ in link.events] == ["completed"]
