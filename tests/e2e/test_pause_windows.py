"""The pause windows of a pause policy: the study pauses by itself when one begins and the
a scheduled resume-study run resumes it at the policy's resume time, until the study is complete.

The windows are shortened to seconds for the test: cron expressions with a sixth field,
seconds, last, as Prefect's schedules read them (`* * * * * */30` is every half minute).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import optuna
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags
from prefect.client.schemas.sorting import FlowRunSort
from prefect_intermission import PausePolicy
from prefect_intermission.control.timed_resume import resume_tag
from prefect_intermission.study.state import pause_history

from deployments.ui_actions import start_deployment_run, wait_for_state
from tests.e2e.studies import trained_epochs, trials


def test_a_study_pauses_in_its_windows_and_resumes_at_the_resume_time(prefect_stack, tmp_path):
    name = f"windows-{uuid.uuid4().hex[:6]}"
    storage = f"sqlite:///{tmp_path}/studies.db"
    PausePolicy(pause_crons=["* * * * * */30"], resume_cron="* * * * * 5,35", timezone="Europe/Berlin").save(name)
    # Over 30 s of training in all (the epochs sleep 0.3 s): a window begins before it is done.
    run = start_deployment_run("pausable-study/digits-demo", {
        "study_name": name, "storage": storage, "checkpoints": str(tmp_path / "checkpoints"),
        "n_trials": 3, "max_epochs": 35, "seed": 2, "max_concurrent_trials": 1,
        "objective": "tests.objectives:slow_classifier", "pause_policy": name,
    })
    assert wait_for_state(run.id, "Completed", "Failed", timeout=420).state.name == "Completed"

    pauses = pause_history(optuna.load_study(study_name=name, storage=storage))
    assert pauses and all(p["reason"] == "window" for p in pauses)
    for pause in pauses:  # each at the start of a window (:00 or :30), once the epoch in progress ended
        assert datetime.fromisoformat(pause["paused_at"]).second % 30 < 10, pause["paused_at"]

    # Each resume came from a resume-study run scheduled at the policy's resume time (:05 or
    # :35), while the run stayed Suspended; the study ran again only after that time.
    with get_client(sync_client=True) as client:
        states = client.read_flow_run_states(run.id)
        resumes = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[resume_tag(run.id)])),
            sort=FlowRunSort.EXPECTED_START_TIME_ASC,
        )
    assert len(resumes) == len(pauses)
    assert all(  # the study's own run was never scheduled for later: it stayed Suspended
        s.state_details.scheduled_time <= s.timestamp + timedelta(seconds=1)
        for s in states if s.is_scheduled() and s.state_details.scheduled_time is not None
    )
    for resume in resumes:
        at = datetime.fromisoformat(resume.parameters["at"])
        assert at.second in (5, 35) and resume.state.is_completed()
        started = [s.timestamp for s in states if s.is_running() and s.timestamp > resume.created]
        assert started and started[0] >= at

    done = trials(storage, name)
    assert len(done) == 3 and all(t.state.is_finished() for t in done)
    assert max(trained_epochs(run.id).values()) == 1, "an epoch was trained twice"
