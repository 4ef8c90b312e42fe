"""`intermission status`: every field of `--json` checked against a study really driven through
the demo deployment: running, paused from the UI, scheduled to resume later, completed."""

from __future__ import annotations

import json
import logging
import os
import signal
import time
import uuid
from datetime import datetime, timezone

import pytest
from optuna.trial import TrialState
from prefect.deployments import run_deployment
from prefect.settings import PREFECT_UI_URL

from deployments.ui_actions import read_run, study_parameters, wait_for_state, wait_until_mid_training

from prefect_intermission import PausePolicy, optimize_study
from prefect_intermission.cli.status import hide_password
from prefect_intermission.study.state import TRIAL_EPOCH_SECONDS_ATTR
from tests.status_study import (
    MAX_EPOCHS,
    N_TRIALS,
    DrivenStudy,
    checkpoint_files,
    driven_study,
    intermission,
    parse_time,
    status_json,
)

# One driven study serves both files: run them in one test process.
pytestmark = pytest.mark.xdist_group("status-study")


@pytest.fixture(scope="session")
def study(prefect_stack, tmp_path_factory) -> DrivenStudy:
    return driven_study(prefect_stack, tmp_path_factory.mktemp("status-study"))


def _epoch_seconds(trials) -> list[float]:
    return [s for t in trials for s in t.system_attrs.get(TRIAL_EPOCH_SECONDS_ATTR, [])]


def _counts(trials) -> dict[str, int]:
    states = [t.state for t in trials]
    return {
        "complete": states.count(TrialState.COMPLETE),
        "pruned": states.count(TrialState.PRUNED),
        "failed": states.count(TrialState.FAIL),
    }


def test_running_again_after_the_resume(study):
    s = study.running.status
    assert s["state"] == "running"
    assert s["prefect_state"] == "Running"
    assert s["flow_run_id"] == study.flow_run_id
    assert s["trials"]["paused"] == s["trials"]["interrupted"] == 0
    assert s["trials"]["running"] + s["trials"]["finished"] >= 1
    for trial in s["unfinished"]:
        assert trial["status"] == "running" and trial["max_epochs"] == MAX_EPOCHS
    assert len(s["pauses"]) == 1 and s["resumes_at"] is None
    # Training time counts the attempt under way, whose epoch times are not recorded yet.
    assert s["training_in_progress_seconds"] > 0
    recorded = sum(_epoch_seconds(study.running.trials))
    assert s["training_seconds"] == pytest.approx(recorded + s["training_in_progress_seconds"], abs=0.01)


def test_while_paused_every_field_matches_the_study(study):
    s, trials = study.paused.status, study.paused.trials
    assert s["study_name"] == study.name
    assert s["state"] == "paused"
    assert s["prefect_state"] == "Suspended"
    assert s["flow_run_id"] == study.flow_run_id
    assert s["ui_url"] == f"{PREFECT_UI_URL.value()}/runs/flow-run/{study.flow_run_id}"
    assert s["storage"] == study.storage
    assert (s["n_trials"], s["max_epochs"], s["seed"]) == (N_TRIALS, MAX_EPOCHS, 5)  # the run's seed

    # Trial counts: what Optuna holds.
    paused = [t for t in trials if t.state == TrialState.RUNNING]
    assert len(paused) == 1, "one trial was mid-training when the pause landed"
    expected = _counts(trials)
    assert {k: s["trials"][k] for k in expected} == expected
    assert s["trials"]["paused"] == 1 and s["trials"]["running"] == s["trials"]["interrupted"] == 0
    assert s["trials"]["finished"] == expected["complete"] + expected["pruned"]

    # The paused trial: epoch out of max_epochs, last metric, the epoch it paused after.
    [trial] = paused
    [shown] = s["unfinished"]
    done = len(trial.intermediate_values)
    assert 2 <= done < MAX_EPOCHS
    assert shown == {
        "number": trial.number, "status": "paused", "epochs_done": done, "max_epochs": MAX_EPOCHS,
        "last_metric": trial.intermediate_values[done - 1], "paused_after_epoch": done - 1,
        "paused_steps_into_epoch": None,  # paused at an epoch boundary
        "params": trial.params,
    }

    # Best value and parameters: the best complete trial so far, if any.
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if complete:
        best = min(complete, key=lambda t: t.value)
        assert (s["best_trial"], s["best_value"], s["best_params"]) == (best.number, best.value, best.params)
    else:
        assert s["best_value"] is None and s["best_params"] is None

    # Why and when it paused: the UI's button, with the trial and its epoch.
    assert len(s["pauses"]) == 1 and s["last_pause"] == s["pauses"][0]
    assert s["last_pause"]["reason"] == "ui"
    assert s["last_pause"]["flow_run_id"] == study.flow_run_id
    assert s["last_pause"]["trials"] == {str(trial.number): done - 1}
    assert s["resumptions"] == [] and s["resumes_at"] is None
    # What the training process was using when it paused.
    resources = s["last_pause"]["resources"]
    assert resources["rss_bytes"] > 50 * 2**20 and resources["cpu_percent"] > 0
    assert resources["peak_rss_bytes"] >= resources["rss_bytes"] and resources["gpus"] == []

    # When it started: the flow run, after the test asked for it.
    started = parse_time(s["started_at"])
    assert (started - study.started).total_seconds() > -1
    assert started <= parse_time(s["last_pause"]["paused_at"])

    # Training time: every epoch trained so far, each measured once, pauses excluded.
    seconds = _epoch_seconds(trials)
    assert s["measured_epochs"] == len(seconds) == sum(len(t.intermediate_values) for t in trials)
    assert s["training_seconds"] == pytest.approx(sum(seconds), abs=0.01)
    assert s["training_in_progress_seconds"] == 0
    wall = (parse_time(s["last_pause"]["paused_at"]) - started).total_seconds()
    assert 0 < s["training_seconds"] < wall + 1

    # Remaining: mean measured epoch time x epochs still to train.
    not_started = N_TRIALS - s["trials"]["finished"] - 1
    assert s["epochs_left"] == (MAX_EPOCHS - done) + not_started * MAX_EPOCHS
    assert s["mean_epoch_seconds"] == pytest.approx(sum(seconds) / len(seconds), abs=1e-3)
    assert s["estimated_remaining_seconds"] == pytest.approx(
        sum(seconds) / len(seconds) * s["epochs_left"], abs=0.2
    )

    # Checkpoints: where they are, and the size of the files really on disk.
    assert s["checkpoints"] == str(study.checkpoints / study.name)
    files = study.paused.checkpoint_files
    assert files and s["checkpoint_files"] == len(files)
    assert s["checkpoint_bytes"] == sum(files.values())
    assert s["problems"] == []


def test_scheduled_to_resume_says_when(study):
    s = study.scheduled.status  # asked for by flow-run id
    assert s["study_name"] == study.name
    assert s["state"] == "scheduled to resume"
    assert s["prefect_state"] == "Resuming"
    assert parse_time(s["resumes_at"]) == study.resume_at
    assert s["trials"]["paused"] == 1
    assert s["last_pause"]["reason"] == "ui"


def test_completed_with_pause_and_resume_history(study):
    s, trials = study.completed.status, study.completed.trials
    assert s["state"] == "completed" and s["prefect_state"] == "Completed"
    assert s["trials"]["finished"] == N_TRIALS == len(trials)
    assert {k: s["trials"][k] for k in ("complete", "pruned", "failed")} == _counts(trials)
    assert s["trials"]["running"] == s["trials"]["paused"] == s["trials"]["interrupted"] == 0
    assert s["unfinished"] == []
    best = min((t for t in trials if t.state == TrialState.COMPLETE), key=lambda t: t.value)
    assert (s["best_trial"], s["best_value"], s["best_params"]) == (best.number, best.value, best.params)
    assert s["epochs_left"] == 0 and s["estimated_remaining_seconds"] == 0
    assert s["resumes_at"] is None

    # History: the one UI pause, and the paused trial resumed from the epoch it paused after.
    [pause] = s["pauses"]
    assert pause == study.paused.status["last_pause"]
    [(number, epoch)] = pause["trials"].items()
    [resumed] = s["resumptions"]
    assert resumed["trial"] == int(number) and resumed["reason"] == "pause"
    assert resumed["from_epoch"] == epoch and resumed["lost_epochs"] == []
    # The run resumed when it was scheduled to, not before.
    assert parse_time(resumed["at"]) >= study.resume_at

    # Training time grew with the epochs trained after the resume; the wait did not count.
    seconds = _epoch_seconds(trials)
    assert s["measured_epochs"] == len(seconds) == sum(len(t.intermediate_values) for t in trials)
    assert s["training_seconds"] == pytest.approx(sum(seconds), abs=0.01)
    assert s["training_seconds"] > study.paused.status["training_seconds"]
    wall = (datetime.now(timezone.utc) - parse_time(s["started_at"])).total_seconds()
    paused_for = (parse_time(resumed["at"]) - parse_time(pause["paused_at"])).total_seconds()
    assert s["training_seconds"] < wall - paused_for + 1

    files = study.completed.checkpoint_files
    assert s["checkpoint_files"] == len(files) and s["checkpoint_bytes"] == sum(files.values())


def test_table_shows_the_study_at_a_glance(study):
    table = study.table
    assert study.name in table
    assert "completed" in table
    assert f"{N_TRIALS}/{N_TRIALS} finished" in table
    # Captured, not in a terminal: the row is whole (Rich's 80 columns cut names and states short).
    assert any(study.name in line and "completed" in line for line in table.splitlines()), table
    assert f"{PREFECT_UI_URL.value()}/runs/flow-run/{study.flow_run_id}" in table
    assert "(ui)" in table  # the last pause and its reason
    assert "; seed 5;" in table
    assert "at pause: CPU" in table and "(average), memory" in table


def test_table_while_paused_shows_the_paused_trial(study):
    table = study.paused_table
    [trial] = study.paused.status["unfinished"]
    assert "paused" in table and "1 paused" in table
    assert f"trial #{trial['number']} paused: {trial['epochs_done']} of {MAX_EPOCHS} epochs done" in table


def test_all_studies_lists_the_latest_run_of_each(study, prefect_stack):
    done = intermission("status", "--json", env=prefect_stack.env)
    assert done.returncode == 0, done.stderr
    listed = json.loads(done.stdout)
    names = [s["study_name"] for s in listed]
    assert names.count(study.name) == 1
    assert len(names) == len(set(names))


def test_unknown_study_is_a_clear_error(prefect_stack):
    done = intermission("status", "no-such-study", env=prefect_stack.env)
    assert done.returncode == 1
    assert "No 'pausable-study' flow run of a study named 'no-such-study'" in done.stderr
    assert "Traceback" not in done.stderr


def test_storage_passwords_are_hidden():
    shown = hide_password("postgresql+psycopg://optuna:s3cret@db.example:5432/studies")
    assert "s3cret" not in shown
    assert shown == "postgresql+psycopg://optuna:***@db.example:5432/studies"


def test_a_hung_run_is_abandoned_and_its_trial_interrupted(prefect_stack, tmp_path):
    """Prefect still says Running, but the process stopped renewing the study's lease."""
    name = f"hung-{uuid.uuid4().hex[:6]}"
    storage = f"sqlite:///{tmp_path}/studies.db"
    run = run_deployment(
        "pausable-study/digits-demo", timeout=0, as_subflow=False,
        parameters=study_parameters("pausable-study/digits-demo", {"study_name": name, "storage": storage, "checkpoints": str(tmp_path / "ck"),
                    "n_trials": 2, "max_epochs": 20, "seed": 1, "max_concurrent_trials": 1}),
        job_variables={"env": {"INTERMISSION_LEASE_SECONDS": "2"}},
    )
    wait_until_mid_training(storage, name, min_epochs=1)
    pid = int(read_run(run.id).infrastructure_pid.rpartition(":")[2])
    assert status_json(name, prefect_stack.env)["state"] == "running"
    try:
        for _ in range(5):
            os.kill(pid, signal.SIGSTOP)  # the machine hangs
            time.sleep(4)  # two lease lifetimes
            s = status_json(str(run.id), prefect_stack.env)
            if not any("locked" in p for p in s["problems"]):
                break
            # Stopped in the middle of a SQLite write, it holds the file's lock for good, and
            # nothing can read the study: an artifact of SQLite, not of a hung machine. Again.
            os.kill(pid, signal.SIGCONT)
            time.sleep(0.3)
        assert (s["state"], s["prefect_state"]) == ("abandoned", "Running"), s
        assert s["trials"]["interrupted"] == 1 and s["trials"]["running"] == 0
        assert [u["status"] for u in s["unfinished"]] == ["interrupted"]
    finally:
        os.kill(pid, signal.SIGKILL)
    wait_for_state(run.id, "Crashed", timeout=120)
    assert status_json(name, prefect_stack.env)["state"] == "failed"


def test_checkpoints_where_a_pause_policy_put_them(prefect_stack, tmp_path, caplog):
    """A pause policy saved with a checkpoint location (deprecated) still decides where the study
    writes its checkpoints, over the `checkpoints` parameter; `intermission status` looks there too."""
    block = f"old-location-{uuid.uuid4().hex[:6]}"
    policy_folder, parameter_folder = tmp_path / "policy-checkpoints", tmp_path / "parameter-checkpoints"
    PausePolicy(checkpoints=str(policy_folder), keep_checkpoints=1).save(block)
    name = f"policy-location-{uuid.uuid4().hex[:6]}"
    with caplog.at_level(logging.WARNING):
        result = optimize_study(
            study_name=name, objective="tests.objectives:classifier",
            storage=f"sqlite:///{tmp_path}/studies.db", checkpoints=str(parameter_folder),
            pause_policy=block, n_trials=2, max_epochs=3, seed=1, sampler="random", pruner="none",
        )
    assert result["status"] == "completed"
    written = checkpoint_files(policy_folder / name)
    assert len(written) == 2, written  # the policy's location, and its one checkpoint kept per trial
    assert not parameter_folder.exists()

    s = status_json(name, prefect_stack.env)
    assert s["state"] == "completed"
    assert s["checkpoints"] == str(policy_folder / name)
    assert s["checkpoint_files"] == len(written)
    assert s["checkpoint_bytes"] == sum(written.values())
    assert s["problems"] == []

    # The run said where its checkpoints went, and what to set instead.
    [warning] = [r.getMessage() for r in caplog.records if "deprecated" in r.getMessage()]
    assert f"Pause policy {block!r} sets the checkpoint location" in warning
    assert f"set the study's `checkpointing.checkpoints` (and `keep_checkpoints`) parameters to {str(policy_folder)!r}" in warning


def test_status_of_a_study_with_checkpoints_imports_no_torch(study):
    """A real `intermission status`, checkpoints counted, without loading PyTorch or the flows."""
    from tests.unit.test_light_import import imported_after, intermission_code

    code = intermission_code("status", study.name, "--json")
    watch = ["torch", "optuna.visualization", "plotly", "prefect_intermission.flows"]
    assert imported_after(code, env={**study.env, "COLUMNS": "200"}, watch=watch) == []
    assert status_json(study.name, study.env)["checkpoint_files"] > 0
