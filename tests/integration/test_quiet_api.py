"""A quiet API: one shared poll of flow-run states per process, and trial runs that learn
of the study's pause from its database instead of reading the study's run over and over."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.states import Running
from prefect_intermission import PauseSignal
from prefect_intermission.flows.run_link import PrefectRunLink
from prefect_intermission.pausing.flow_run_poll import FlowRunPoll, shared_poll
from prefect_intermission.pausing.notices import PauseNotices
from prefect_intermission.pausing.watcher import FlowRunPauseWatcher
from prefect_intermission.study.config import StudyConfig
from prefect_intermission.study.executors.trial_runs import FlowRunExecutor
from prefect_intermission.study.leases import StudyLease
from prefect_intermission.study.setup import open_store, open_study
from prefect_intermission.study.study_run_watcher import StudyRunWatcher

from deployments.local_stack import PROJECT_ROOT
from deployments.ui_actions import read_run, ui_pause

pytestmark = pytest.mark.usefixtures("prefect_server")

EXECUTION = "study execution 1"


@flow
def _a_flow() -> None:
    """Only its flow runs are used: created Running, nothing executes them."""


def _running_flow_run():
    with get_client(sync_client=True) as client:
        return client.create_flow_run(_a_flow, state=Running())


def test_watches_of_several_runs_share_one_request_per_interval():
    study, trial_a, trial_b = (_running_flow_run() for _ in range(3))
    poll = FlowRunPoll()
    watches = [poll.watch(run.id, every=0.2) for run in (study, study, trial_a, trial_b)]
    try:
        for watch in watches:  # the first readings (made at once) are in
            assert watch.next(timeout=30) is not None
        before = poll.requests
        for _ in range(5):
            readings = [watch.next(timeout=30) for watch in watches]
            assert [r.id for r in readings] == [study.id, study.id, trial_a.id, trial_b.id]
            assert all(r.state.is_running() for r in readings)
        # Five new readings of four watches of three runs: five requests, not twenty.
        assert poll.requests - before <= 6
    finally:
        for watch in watches:
            watch.close()


def test_a_run_nobody_watches_is_not_read():
    run = _running_flow_run()
    poll = FlowRunPoll()
    with poll.watch(run.id, every=0.1) as watch:
        assert watch.next(timeout=30).id == run.id
    requests = poll.requests
    assert watch.next(timeout=0.5) is None  # closed: no reading comes, and no request is made
    assert poll.requests == requests


def _trial_side(api_url: str, storage: str, study_name: str, trial_run: str, study_run: str) -> None:
    """A trial run's process: its watcher, until the study's pause reaches it; prints what it saw."""
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from sqlalchemy import create_engine

    engine = create_engine(storage)
    signal = PauseSignal()
    with temporary_settings({PREFECT_API_URL: api_url}):
        watcher = StudyRunWatcher(
            signal, trial_run_id=uuid.UUID(trial_run), study_run_id=uuid.UUID(study_run),
            study_lease=StudyLease(engine, study_name, EXECUTION), study_execution=EXECUTION,
            notices=PauseNotices(engine, study_name), run_poll_seconds=3600,
        )
        with watcher:
            print("watching", flush=True)
            stopped = signal.wait(120)
        print(json.dumps({"stopped": stopped, "reason": signal.reason, "requests": shared_poll().requests}))


def test_a_trial_run_stops_when_the_study_run_is_paused_from_the_ui_without_reading_the_study_run(
    prefect_server, tmp_path
):
    name = f"quiet-{uuid.uuid4().hex[:6]}"
    storage = f"sqlite:///{tmp_path}/studies.db"
    config = StudyConfig(
        study_name=name, objective="tests.objectives:classifier", storage=storage,
        checkpoints=str(tmp_path / "checkpoints"), trial_deployment="pausable-trial/train-trial",
    )
    state = open_study(config)
    study_run, trial_run = _running_flow_run(), _running_flow_run()
    signal = PauseSignal()
    # The study run's side, as it runs with trial runs: its lease, its executor, its watcher.
    FlowRunExecutor(
        state, config=config, checkpoints=open_store(config), pause_signal=signal,
        flow_run_id=study_run.id, study_execution=EXECUTION,
    )
    lease = StudyLease(state.engine, name, EXECUTION)
    assert lease.try_acquire()
    trial_process = subprocess.Popen(
        [sys.executable, "-c", "import sys; from tests.integration.test_quiet_api import _trial_side; _trial_side(*sys.argv[1:])",
         prefect_server.api_url, storage, name, str(trial_run.id), str(study_run.id)],
        cwd=PROJECT_ROOT, env=prefect_server.env, stdout=subprocess.PIPE, text=True,
    )
    try:
        with lease:
            assert trial_process.stdout.readline().strip() == "watching"
            with FlowRunPauseWatcher(PrefectRunLink(study_run), signal, poll_seconds=0.2):
                ui_pause(study_run.id)
                assert signal.wait(60)
                out, _ = trial_process.communicate(timeout=120)
    finally:
        trial_process.kill()
    seen = json.loads(out.splitlines()[-1])
    assert seen["stopped"] and seen["reason"] == "ui"
    # Its one request read its own run and the study's together, when it started; the
    # pause came through the study's database.
    assert seen["requests"] == 1
    # The study took the UI's pause over: it no longer expires.
    paused = read_run(study_run.id).state
    assert paused.is_paused() and paused.state_details.pause_timeout is None
