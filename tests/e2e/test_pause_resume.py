"""End to end: the demo deployment paused from the UI and the CLI, resumed, and compared
bit for bit with an uninterrupted run of the same search."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone

import optuna
import torch
from optuna.trial import TrialState
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags
from prefect_intermission.control.timed_resume import pending_resume, resume_tag
from prefect_intermission.flows.control import resume_study
from prefect_intermission.pausing.run_states import FLOW_PAUSE_KEY_PREFIX
from prefect_intermission.study.state import (
    TRIAL_PAUSED_EPOCH_ATTR,
    TRIAL_STATUS_ATTR,
    pause_history,
)

from deployments.ui_actions import (
    policy_waiting_for_resume,
    read_run,
    start_deployment_run,
    ui_pause,
    ui_resume,
    wait_for,
    wait_for_state,
    wait_until_mid_training,
    wait_until_paused_by_study,
    wait_until_suspended_by_study,
)
from tests.e2e.studies import (
    LOCAL_ZONE,
    artifacts_of,
    error_logs,
    final_weights,
    last_epoch,
    paused_line,
    read_in,
    run_logs,
    study_events,
    trained_epochs,
    trials,
)

N_TRIALS = 4
MAX_EPOCHS = 8
UI_TIMEOUT_SECONDS = 3


def _parameters(study_name: str, tmp_path) -> dict:
    return {
        "study_name": study_name,
        "storage": f"sqlite:///{tmp_path}/studies.db",
        "checkpoints": str(tmp_path / "checkpoints"),
        "n_trials": N_TRIALS,
        "max_epochs": MAX_EPOCHS,
        "max_concurrent_trials": 1,
        "seed": 7,
    }


def _intermission(*args: str, env) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "prefect_intermission.cli.commands", *args],
        env=env, capture_output=True, text=True, timeout=60,
    )


def test_paused_and_resumed_twice_matches_an_uninterrupted_run(prefect_stack, tmp_path):
    tag = uuid.uuid4().hex[:6]
    storage = f"sqlite:///{tmp_path}/studies.db"
    checkpoints = str(tmp_path / "checkpoints")
    reference_name, paused_name = f"reference-{tag}", f"paused-{tag}"
    reference = start_deployment_run("pausable-study/digits-demo", _parameters(reference_name, tmp_path))
    # A policy that ignores the dialog's timeout: the run waits for Resume, however long.
    run = start_deployment_run(
        "pausable-study/digits-demo",
        {**_parameters(paused_name, tmp_path), "pause_policy": policy_waiting_for_resume()},
    )

    # First cycle: the UI's Pause button, mid-training.
    wait_until_mid_training(storage, paused_name, min_epochs=2)
    ui_pause(run.id, timeout_seconds=UI_TIMEOUT_SECONDS)
    suspended = wait_until_paused_by_study(run.id)
    assert suspended.state.state_details.pause_timeout is None
    paused = [t for t in trials(storage, paused_name) if t.state == TrialState.RUNNING]
    assert paused, "a trial was mid-training when the pause landed"
    for t in paused:
        assert t.system_attrs[TRIAL_STATUS_ATTR] == "paused"
        assert t.system_attrs[TRIAL_PAUSED_EPOCH_ATTR] == last_epoch(t)

    # A pause is no error: nothing on the run's log is red (Prefect logs a "Paused" end at ERROR).
    assert error_logs(run.id) == []

    # What the user sees on the paused run's page: artifacts read back from the API.
    artifacts = artifacts_of(run.id)
    assert float(artifacts[f"{paused_name}-progress"].data) == 0.0  # no trial finished yet
    rows = json.loads(artifacts[f"{paused_name}-trials"].data)
    assert {r["trial"]: (r["state"], r["epoch"]) for r in rows} == {
        t.number: ("paused", f"{len(t.intermediate_values)}/{MAX_EPOCHS}") for t in paused
    }
    assert all(json.loads(r["params"]) == t.params for r, t in zip(rows, paused))
    summary = artifacts[f"{paused_name}-pause"].data
    assert f"# Study `{paused_name}` paused" in summary
    assert "the Pause / Suspend button in the Prefect UI" in summary
    for t in paused:
        assert paused_line(t, MAX_EPOCHS) in summary
    assert f"intermission resume {run.id}" in summary
    assert checkpoints in summary
    resources = pause_history(optuna.load_study(study_name=paused_name, storage=storage))[0]["resources"]
    assert resources["rss_bytes"] > 50 * 2**20 and resources["cpu_percent"] > 0
    assert f"memory {resources['rss_bytes'] / 2**20:.1f} MiB" in summary

    # Past the UI's timeout the run is still suspended, not failed.
    time.sleep(UI_TIMEOUT_SECONDS + 5)
    assert read_run(run.id).state.name == "Suspended"

    # Second cycle: `intermission pause` and `intermission resume` from the terminal.
    ui_resume(run.id)
    wait_for_state(run.id, "Running", timeout=120)
    finished_before = sum(t.state.is_finished() for t in trials(storage, paused_name))
    wait_for(
        lambda: any(
            t.state == TrialState.RUNNING and t.number > max(p.number for p in paused)
            and len(t.intermediate_values) >= 2
            for t in trials(storage, paused_name)
        ),
        timeout=180, what="a later trial to be mid-training",
    )
    paused_cli = _intermission("pause", str(run.id), env=prefect_stack.env)
    assert paused_cli.returncode == 0, paused_cli.stderr
    assert f"intermission resume {run.id}" in paused_cli.stdout
    wait_until_suspended_by_study(run.id)
    assert sum(t.state.is_finished() for t in trials(storage, paused_name)) >= finished_before
    resumed_cli = _intermission("resume", str(run.id), env=prefect_stack.env)
    assert resumed_cli.returncode == 0, resumed_cli.stderr

    wait_for_state(run.id, "Completed", timeout=300)
    wait_for_state(reference.id, "Completed", timeout=300)

    # Exactly n_trials, all finished, none duplicated.
    got, expected = trials(storage, paused_name), trials(storage, reference_name)
    assert [t.number for t in got] == list(range(N_TRIALS))
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in got)
    pauses = pause_history(optuna.load_study(study_name=paused_name, storage=storage))
    assert [p["reason"] for p in pauses] == ["ui", "cli"]
    assert pauses[0]["trials"] == {str(t.number): last_epoch(t) for t in paused}

    # Automations can react: the study's events reached the server with the run as related resource.
    def names():
        return [e["event"] for e in study_events(paused_name)]

    wait_for(lambda: names().count("intermission.study.completed") == 1, timeout=30, what="study events")
    assert names().count("intermission.study.paused") == 2
    assert names().count("intermission.study.resumed") == 2
    events = study_events(paused_name)
    assert all(
        {"prefect.resource.id": f"prefect.flow-run.{run.id}", "prefect.resource.role": "flow-run"}.items()
        <= e["related"][0].items() for e in events
    )
    trial_events = [(e["event"], e["related"][1]["prefect.resource.id"]) for e in events if ".trial." in e["event"]]
    for t in paused:
        assert ("intermission.trial.paused", f"intermission.trial.{paused_name}.{t.number}") in trial_events
        assert ("intermission.trial.resumed", f"intermission.trial.{paused_name}.{t.number}") in trial_events

    # Every epoch was trained exactly once across the three executions.
    # (A pruned trial's last epoch is reported but pruned before its checkpoint.)
    checkpointed = sorted(
        (t.number, epoch) for t in got for epoch in t.intermediate_values
        if t.state == TrialState.COMPLETE or epoch < max(t.intermediate_values)
    )

    def all_epoch_lines_arrived():  # the last lines reach the API shortly after the run ends
        counts = trained_epochs(run.id)
        return counts if sorted(counts) == checkpointed or max(counts.values(), default=0) > 1 else None

    counts = wait_for(all_epoch_lines_arrived, timeout=30, what="the run's epoch log lines")
    assert max(counts.values()) == 1, {k: v for k, v in counts.items() if v > 1}

    # Bit-identical to the uninterrupted run: parameters, curves, values, weights.
    for mine, theirs in zip(got, expected, strict=True):
        assert mine.params == theirs.params
        assert mine.intermediate_values == theirs.intermediate_values
        assert mine.value == theirs.value
        assert mine.state == theirs.state
        a = final_weights(checkpoints, paused_name, mine.number)
        b = final_weights(checkpoints, reference_name, theirs.number)
        assert all(torch.equal(a[k], b[k]) for k in b), f"trial {mine.number} weights differ"


DIALOG_TIMEOUT_SECONDS = 20


def _epochs_trained(storage: str, study_name: str) -> int:
    return sum(len(t.intermediate_values) for t in trials(storage, study_name))


def _resume_runs(flow_run_id) -> list:
    """The `resume-study` runs scheduled for the study run, whatever their state."""
    with get_client(sync_client=True) as client:
        return client.read_flow_runs(flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[resume_tag(flow_run_id)])))


def test_the_timeout_typed_in_the_ui_pause_dialog_resumes_the_run_by_itself(prefect_stack, tmp_path):
    name = f"dialog-{uuid.uuid4().hex[:6]}"
    storage = f"sqlite:///{tmp_path}/studies.db"
    run = start_deployment_run("pausable-study/digits-demo", _parameters(name, tmp_path))
    wait_until_mid_training(storage, name, min_epochs=2)  # the study exists from here on
    for cycle in range(2):
        wait_for_state(run.id, "Running", timeout=180)
        before = _epochs_trained(storage, name)
        wait_for(lambda: _epochs_trained(storage, name) >= before + 2, timeout=180, what="two more epochs")
        due = ui_pause(run.id, timeout_seconds=DIALOG_TIMEOUT_SECONDS).state_details.pause_timeout  # "back in 20 s"

        # The study pauses and its run stays Suspended, with no timeout (so the UI keeps its
        # Resume and the server never fails it); a resume-study run is due at the dialog's time.
        suspended = wait_until_paused_by_study(run.id)
        assert suspended.state.state_details.pause_timeout is None
        assert datetime.now(timezone.utc) < due, "paused well within the dialog's timeout"
        assert pending_resume(suspended).at == due
        summary = artifacts_of(run.id)[f"{name}-pause"].data
        assert f"**Resumes:** by itself at {read_in('UTC', due)}," in summary  # no pause policy: UTC
        assert f"intermission resume {run.id}" in summary
        assert pause_history(optuna.load_study(study_name=name, storage=storage))[cycle]["reason"] == "ui"
        status = _intermission("status", str(run.id), env={**prefect_stack.env, "TZ": LOCAL_ZONE})
        assert f"resumes by itself at {read_in(LOCAL_ZONE, due)}" in status.stdout, status.stdout
        assert f"intermission resume {run.id}" in status.stdout

        # ... and it resumes once the timeout has passed (give or take the worker's 2 s
        # prefetch in this stack), never a pause's worth before, once.
        started = wait_for_state(run.id, "Resuming", "Pending", "Running", "Completed", timeout=120)
        assert started.state.timestamp >= due - timedelta(seconds=3)
        wait_for_state(run.id, "Running", "Completed", timeout=120)
        key = suspended.state.state_details.pause_key
        [control] = [r for r in _resume_runs(run.id) if r.parameters["pause_key"] == key]
        wait_for_state(control.id, "Completed", timeout=60)
        assert "Resumed study" in wait_for(lambda: run_logs(control.id), timeout=30, what="its log")

    wait_for_state(run.id, "Completed", timeout=300)
    assert read_run(run.id).run_count == 3  # the first execution and one per pause: none twice
    got = trials(storage, name)
    assert [t.number for t in got] == list(range(N_TRIALS))
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in got)
    counts = trained_epochs(run.id, at_least=sum(len(t.intermediate_values) for t in got) - N_TRIALS)
    assert max(counts.values()) == 1, {k: v for k, v in counts.items() if v > 1}


def test_a_timed_pause_resumes_sooner_from_the_terminal_once(prefect_stack, tmp_path):
    name = f"sooner-{uuid.uuid4().hex[:6]}"
    storage = f"sqlite:///{tmp_path}/studies.db"
    run = start_deployment_run("pausable-study/digits-demo", _parameters(name, tmp_path))
    wait_until_mid_training(storage, name, min_epochs=2)
    ui_pause(run.id, timeout_seconds=900)  # the dialog's "back in 15 minutes"
    suspended = wait_until_paused_by_study(run.id)
    due = pending_resume(suspended).at
    assert due > datetime.now(timezone.utc) + timedelta(minutes=14)

    # Rescheduled from the terminal: still paused, the resume moves to the new time.
    later = _intermission("resume", str(run.id), "--in", "2h", env=prefect_stack.env)
    assert later.returncode == 0, later.stderr
    assert "stays paused" in later.stdout and f"intermission resume {run.id}" in later.stdout
    assert read_run(run.id).state.name == "Suspended"
    assert pending_resume(read_run(run.id)).at > due + timedelta(minutes=90)
    assert len([r for r in _resume_runs(run.id) if r.state.is_scheduled()]) == 1

    # A resume scheduled for an earlier pause of this run finds it in another pause: it does nothing.
    assert resume_study(str(run.id), f"{FLOW_PAUSE_KEY_PREFIX}an-earlier-pause") is False
    assert read_run(run.id).state.name == "Suspended"

    # Twice at once, now: one execution, which deletes the resume it no longer needs.
    both = [
        subprocess.Popen(
            [sys.executable, "-m", "prefect_intermission.cli.commands", "resume", str(run.id)],
            env=prefect_stack.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120) for p in both]
    assert [p.returncode for p in both] == [0, 0], outputs
    assert any("Resuming" in out and "now" in out for out, _ in outputs), outputs
    wait_for_state(run.id, "Completed", timeout=300)
    assert read_run(run.id).run_count == 2
    assert wait_for(lambda: not _resume_runs(run.id), timeout=30, what="the scheduled resume to be deleted")
    got = trials(storage, name)
    assert [t.number for t in got] == list(range(N_TRIALS))
    counts = trained_epochs(run.id, at_least=sum(len(t.intermediate_values) for t in got) - N_TRIALS)
    assert max(counts.values()) == 1, {k: v for k, v in counts.items() if v > 1}


def test_without_the_resume_deployment_a_timed_pause_waits_as_paused_and_resumes_sooner(prefect_stack, tmp_path):
    name = f"no-control-{uuid.uuid4().hex[:6]}"
    storage = f"sqlite:///{tmp_path}/studies.db"
    run = start_deployment_run(
        "pausable-study/digits-demo", _parameters(name, tmp_path),
        job_variables={"env": {"INTERMISSION_RESUME_DEPLOYMENT": "resume-study/not-deployed"}},
    )
    wait_until_mid_training(storage, name, min_epochs=2)
    due = ui_pause(run.id, timeout_seconds=900).state_details.pause_timeout

    # The run waits for its time as a scheduled run that says it is paused, and how to resume now.
    waiting = wait_for_state(run.id, "Paused", timeout=120)
    assert waiting.state.is_scheduled() and waiting.state.state_details.scheduled_time == due
    assert f"intermission resume {run.id}" in waiting.state.message
    assert "Deploy the control flows" in wait_for(
        lambda: "No deployment 'resume-study/not-deployed'" in run_logs(run.id) and run_logs(run.id),
        timeout=30, what="the warning on the run's log",
    )
    status = _intermission("status", str(run.id), env={**prefect_stack.env, "TZ": LOCAL_ZONE})
    assert " paused " in status.stdout and f"resumes by itself at {read_in(LOCAL_ZONE, due)}" in status.stdout

    resumed = _intermission("resume", str(run.id), env=prefect_stack.env)
    assert resumed.returncode == 0 and "now" in resumed.stdout, resumed.stdout + resumed.stderr
    wait_for_state(run.id, "Completed", timeout=300)
    assert read_run(run.id).run_count == 2
    got = trials(storage, name)
    counts = trained_epochs(run.id, at_least=sum(len(t.intermediate_values) for t in got) - N_TRIALS)
    assert max(counts.values()) == 1, {k: v for k, v in counts.items() if v > 1}
