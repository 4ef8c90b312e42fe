"""Ways to pause and resume with a pause policy: notifications, a timed resume, the pause file
(deleting it resumes a suspended run), the policy's resume schedule, the control deployments,
two resume requests at once, and a pause rule."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid
from contextvars import copy_context
from datetime import datetime, timedelta, timezone

import optuna
from optuna.trial import TrialState
from prefect.client.orchestration import get_client
from prefect_intermission import PausePolicy, request_resume
from prefect_intermission.control.timed_resume import pending_resume
from prefect_intermission.flows.control import (
    resume_deleted_pause_files_flow,
    resume_paused_studies,
)
from prefect_intermission.study.state import (
    TRIAL_PAUSED_EPOCH_ATTR,
    TRIAL_RESUMPTIONS_ATTR,
    pause_history,
)

from deployments.local_stack import free_port
from deployments.ui_actions import (
    read_run,
    start_deployment_run,
    ui_pause,
    wait_for,
    wait_for_state,
    wait_until_mid_training,
    wait_until_paused_by_study,
    wait_until_suspended_by_study,
)
from tests.e2e.studies import LOCAL_ZONE, paused_line, read_in, run_logs, trained_epochs, trials
from tests.e2e.webhook import webhook

N_TRIALS = 2
SECRET = "s3cr3t-hook-token"


def _parameters(name, tmp_path, policy, max_epochs=16):
    return {
        "study_name": name,
        "storage": f"sqlite:///{tmp_path}/studies.db",
        "checkpoints": str(tmp_path / "checkpoints"),
        "n_trials": N_TRIALS,
        "max_epochs": max_epochs,
        "seed": 5,
        "pause_policy": policy,
    }


def _executions(flow_run_id) -> int:
    """How many times the flow ran: Running states set by the engine (not the study's own
    brief Running state while it carries out a pause)."""
    with get_client(sync_client=True) as client:
        states = client.read_flow_run_states(flow_run_id)
    return sum(s.is_running() and s.message != "Pause carried out; suspending." for s in states)


def _check_complete(storage, name, run):
    done = trials(storage, name)
    assert [t.number for t in done] == list(range(N_TRIALS))
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in done)
    assert max(trained_epochs(run.id).values()) == 1, "an epoch was trained twice"


def test_notifications_on_pause_resume_and_completion_reach_a_webhook(prefect_stack, tmp_path):
    name = f"notified-{uuid.uuid4().hex[:6]}"
    storage = f"sqlite:///{tmp_path}/studies.db"
    with webhook() as hook:
        PausePolicy(  # resumed by hand below, not when the UI dialog's timeout passes
            apprise_urls=[hook.url(f"hooks/{SECRET}"), f"json://127.0.0.1:{free_port()}/down"],
            ignore_ui_timeout=True,
        ).save(name)
        run = start_deployment_run("pausable-study/digits-demo", _parameters(name, tmp_path, name))
        wait_until_mid_training(storage, name, min_epochs=2)
        ui_pause(run.id)
        wait_until_suspended_by_study(run.id)
        paused_msg = wait_for(lambda: hook.messages(f"Study {name} paused"), timeout=60, what="the pause message")[0]
        body = paused_msg["message"]
        running = [t for t in trials(storage, name) if t.state == TrialState.RUNNING]
        assert running, "a trial was mid-training when the pause landed"
        for t in running:
            assert paused_line(t, max_epochs=16) in body
        assert "the Pause / Suspend button in the Prefect UI" in body
        assert f"intermission resume {run.id}" in body and str(tmp_path / "checkpoints") in body
        assert "Resumes:** when you resume it" in body
        assert f"/runs/flow-run/{run.id}" in body

        # The unreachable endpoint did not stop the pause, and was reported without its URL.
        wait_for(lambda: "apprise_urls[1] not delivered (attempt 3 of 3)" in run_logs(run.id), timeout=60,
                 what="the undelivered notification to be logged")
        assert read_run(run.id).state.is_paused()

        before = datetime.now(timezone.utc)
        resumed = subprocess.run(
            [sys.executable, "-m", "prefect_intermission.cli.commands", "resume", str(run.id), "--in", "4s"],
            env={**prefect_stack.env, "TZ": LOCAL_ZONE}, capture_output=True, text=True, timeout=60,
        )
        after = datetime.now(timezone.utc)
        assert resumed.returncode == 0, resumed.stderr
        scheduled = read_run(run.id)
        assert scheduled.state.name == "Suspended", "it stays paused (Resume on its page) until then"
        resume_at = pending_resume(scheduled).at
        assert before + timedelta(seconds=4) <= resume_at <= after + timedelta(seconds=4)
        assert f"resumes by itself at {read_in(LOCAL_ZONE, resume_at)}" in resumed.stdout
        wait_for_state(run.id, "Completed", timeout=300)
        resumed_msg = hook.messages(f"Study {name} resumed")
        assert resumed_msg and "continuing #" in resumed_msg[0]["message"]
        assert hook.messages(f"Study {name} completed")
        assert len(hook.messages(f"Study {name} paused")) == 1, "a retry repeated a delivered message"
        everything = "\n".join(m["title"] + m["message"] for m in hook.received) + run_logs(run.id)
        assert SECRET not in everything
        assert all(m["path"] == f"/hooks/{SECRET}" for m in hook.received)
    _check_complete(storage, name, run)


def test_a_pause_file_pauses_and_the_policy_schedule_resumes(prefect_stack, tmp_path):
    name = f"scheduled-{uuid.uuid4().hex[:6]}"
    storage = f"sqlite:///{tmp_path}/studies.db"
    pause_file = tmp_path / "pause-now"
    PausePolicy(pause_file=str(pause_file), resume_cron="* * * * *").save(name)
    run = start_deployment_run("pausable-study/digits-demo", _parameters(name, tmp_path, name))
    wait_until_mid_training(storage, name, min_epochs=2)
    pause_file.touch()
    suspended = wait_until_paused_by_study(run.id)
    pause_file.unlink()
    resume_at = pending_resume(suspended).at
    assert resume_at.second == 0 and resume_at > datetime.now(timezone.utc)
    assert pause_history(optuna.load_study(study_name=name, storage=storage))[0]["reason"] == "file"
    wait_for_state(run.id, "Completed", timeout=240)
    with get_client(sync_client=True) as client:
        history = client.read_flow_run_states(run.id)
    started_again = [s.timestamp for s in history if s.is_running()][-1]
    assert started_again >= resume_at
    _check_complete(storage, name, run)


def test_deleting_the_pause_file_resumes_the_suspended_run_it_paused(prefect_stack, tmp_path):
    name = f"file-deleted-{uuid.uuid4().hex[:6]}"
    storage = f"sqlite:///{tmp_path}/studies.db"
    pause_file = tmp_path / "pause-now"
    PausePolicy(pause_file=str(pause_file)).save(name)
    run = start_deployment_run("pausable-study/digits-demo", _parameters(name, tmp_path, name))
    wait_until_mid_training(storage, name, min_epochs=2)
    pause_file.touch()
    wait_until_suspended_by_study(run.id)
    assert pause_history(optuna.load_study(study_name=name, storage=storage))[0]["reason"] == "file"

    # What the resume-deleted-pause-files deployment runs every 5 minutes.
    assert name not in resume_deleted_pause_files_flow(), "resumed while its pause file is still there"
    time.sleep(2)
    assert read_run(run.id).state.is_paused()
    pause_file.unlink()
    assert name in resume_deleted_pause_files_flow()
    wait_for_state(run.id, "Completed", timeout=300)
    assert _executions(run.id) == 2
    _check_complete(storage, name, run)


def test_control_deployments_pause_and_resume_and_two_resumes_start_one_execution(prefect_stack, tmp_path):
    name = f"controlled-{uuid.uuid4().hex[:6]}"
    storage = f"sqlite:///{tmp_path}/studies.db"
    # Trials of at least 40 s: the control run needs a CLI call, a worker pickup and a process
    # start to arrive, which on a loaded machine took longer than the demo's whole study.
    run = start_deployment_run(
        "pausable-study/digits-demo",
        {**_parameters(name, tmp_path, None, max_epochs=40), "objective": "tests.objectives:slow_classifier"},
        job_variables={"env": {"INTERMISSION_TEST_EPOCH_SECONDS": "1"}},
    )
    wait_until_mid_training(storage, name, min_epochs=2)
    prefect_stack.prefect("deployment", "run", "pause-study/pause-study", "--param", f"study_name={name}")
    wait_until_suspended_by_study(run.id)
    assert pause_history(optuna.load_study(study_name=name, storage=storage))[0]["reason"] == "deployment"
    assert _executions(run.id) == 1

    # The nightly flow (what its cron deployment runs) and users' resumes, at the same moment:
    # none of them fails, and one execution starts.
    nightly: list[list[str]] = []
    together = threading.Barrier(4)

    def at_once(resume, *args):
        together.wait()
        return resume(*args)

    threads = [
        threading.Thread(target=copy_context().run, args=(
            lambda: nightly.append(at_once(resume_paused_studies, name)),)),
        *(threading.Thread(target=copy_context().run, args=(at_once, request_resume, run.id)) for _ in range(3)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert nightly and nightly[0] in ([name], [])  # it resumed the study, or found it resuming
    wait_for_state(run.id, "Completed", timeout=300)
    time.sleep(3)  # a second execution, had one been started, would show by now
    assert _executions(run.id) == 2, "two resume requests started one execution"
    _check_complete(storage, name, run)


def test_a_pause_rule_suspends_the_run_and_each_trial_pauses_it_only_once(prefect_stack, tmp_path):
    name = f"ruled-{uuid.uuid4().hex[:6]}"
    storage = f"sqlite:///{tmp_path}/studies.db"
    # Every epoch's loss is below 100: each trial reaches the threshold at its first epoch.
    rule = {"rule": "prefect_intermission.pausing.rules:metric_threshold", "threshold": 100.0}
    run = start_deployment_run(
        "pausable-study/digits-demo", {**_parameters(name, tmp_path, None, max_epochs=6), "pause_rules": [rule]}
    )
    wait_until_suspended_by_study(run.id)
    (pause,) = pause_history(optuna.load_study(study_name=name, storage=storage))
    assert pause["reason"].startswith("rule: trial ") and "reached metric" in pause["reason"]
    paused = {t.number: t.system_attrs[TRIAL_PAUSED_EPOCH_ATTR] for t in trials(storage, name)
              if t.state == TrialState.RUNNING}
    assert paused and pause["trials"] == {str(n): e for n, e in paused.items()}

    request_resume(run.id)  # the same rule, still met: the trials that reached it train on
    wait_for_state(run.id, "Completed", timeout=240)
    _check_complete(storage, name, run)
    assert len(pause_history(optuna.load_study(study_name=name, storage=storage))) == 1
    for number, epoch in paused.items():
        record = trials(storage, name)[number].system_attrs[TRIAL_RESUMPTIONS_ATTR][-1]
        assert (record["reason"], record["from_epoch"], record["lost_epochs"]) == ("pause", epoch, [])
