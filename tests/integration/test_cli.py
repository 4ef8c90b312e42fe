"""`intermission pause` / `resume`: clear errors for runs they cannot act on; the times the
commands show, in the local time zone."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone

import optuna
import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.states import Suspended

from prefect_intermission import optimize_study
from prefect_intermission.cli.commands import main
from prefect_intermission.control.run_control import read_flow_run
from prefect_intermission.control.timed_resume import cancel_pending_resumes, pending_resume
from prefect_intermission.pausing.run_states import FLOW_PAUSE_KEY_PREFIX
from prefect_intermission.study.flow_runs import latest_runs, study_config_of
from prefect_intermission.study.state import StudyState, open_storage
from tests.e2e.studies import LOCAL_ZONE, read_in


@flow
def _finished_flow() -> int:
    return 1


@pytest.fixture
def completed_run_id(prefect_server) -> str:
    state = _finished_flow(return_state=True)
    return str(state.state_details.flow_run_id)


def test_pausing_a_run_that_is_not_running_says_so(completed_run_id, capsys):
    assert main(["pause", completed_run_id]) == 1
    err = capsys.readouterr().err
    assert "is Completed, not Running" in err
    assert "only a running study can be paused" in err


def test_resuming_a_run_that_is_not_paused_says_so(completed_run_id, capsys):
    assert main(["resume", completed_run_id]) == 1
    assert "is Completed, not paused" in capsys.readouterr().err


def test_an_unknown_flow_run_is_reported(prefect_server, capsys):
    missing = str(uuid.uuid4())
    assert main(["pause", missing]) == 1
    assert f"No flow run {missing}" in capsys.readouterr().err


def test_a_name_no_study_has_is_reported(prefect_server, capsys):
    assert main(["resume", "no-such-study"]) == 1
    assert "No 'pausable-study' flow run of a study named 'no-such-study'" in capsys.readouterr().err


def test_every_command_on_a_study_takes_its_name_or_a_flow_run_id(prefect_server, tmp_path, capsys):
    name, storage = f"named-{uuid.uuid4().hex[:6]}", f"sqlite:///{tmp_path}/s.db"
    optimize_study(study_name=name, objective="tests.objectives:classifier", storage=storage,
                   checkpoints=str(tmp_path / "ckpt"), n_trials=1, max_epochs=1, seed=1)
    [run] = latest_runs(name)
    for target in (name, str(run.id)):
        assert main(["pause", target]) == 1 and "is Completed, not Running" in capsys.readouterr().err
        assert main(["resume", target, "--start-in", "1h"]) == 1
        assert "is Completed, not paused" in capsys.readouterr().err
        output = tmp_path / f"report-{target}.html"
        assert main(["report", target, "--output", str(output)]) == 0
        assert f"Report of study {name!r}" in capsys.readouterr().out and output.exists()


def test_a_prefect_api_that_cannot_be_reached_is_reported_with_what_to_do(tmp_path):
    # As a user runs it: its own process, the API URL pointing at a port nothing listens on.
    from deployments.local_stack import free_port

    url = f"http://127.0.0.1:{free_port()}/api"
    done = subprocess.run(
        [sys.executable, "-m", "prefect_intermission.cli.commands", "status"],
        env={**os.environ, "PREFECT_API_URL": url, "PREFECT_CLIENT_MAX_RETRIES": "0", "PREFECT_HOME": str(tmp_path)},
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 1
    assert f"cannot reach the Prefect API at {url}" in done.stderr
    assert "prefect server start" in done.stderr and "PREFECT_API_URL" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.fixture
def local_zone(monkeypatch) -> Iterator[Callable[[str], None]]:
    """Sets this process's local time zone (TZ, as a user's shell sets it); put back afterwards."""

    def set_zone(name: str) -> None:
        monkeypatch.setenv("TZ", name)
        time.tzset()

    yield set_zone
    monkeypatch.undo()
    time.tzset()


ISO_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d")  # how --json writes times; never shown to people


def test_times_are_shown_in_the_local_time_zone_to_the_second(prefect_server, tmp_path, capsys, monkeypatch, local_zone):
    # A study that paused, and that `resume --start-in 1h` sets to resume by itself (a scheduled
    # run of a resume deployment of this test's own, which no worker serves).
    name, storage = f"times-{uuid.uuid4().hex[:6]}", f"sqlite:///{tmp_path}/s.db"
    optimize_study(study_name=name, objective="tests.objectives:classifier", storage=storage,
                   checkpoints=str(tmp_path / "ckpt"), n_trials=1, max_epochs=1, seed=1)
    [run] = latest_runs(name)
    rdb = open_storage(storage)
    state = StudyState(optuna.load_study(study_name=name, storage=rdb), engine=rdb.engine, signing_key=b"k" * 32)
    state.record_pause(flow_run_id=str(run.id), reason="cli", trials={0: 0})
    with get_client(sync_client=True) as client:
        client.create_deployment(client.create_flow_from_name("resume-study"), name=name)
        client.set_flow_run_state(run.id, Suspended(pause_key=f"{FLOW_PAUSE_KEY_PREFIX}{uuid.uuid4().hex}"), force=True)
    monkeypatch.setenv("INTERMISSION_RESUME_DEPLOYMENT", f"resume-study/{name}")

    try:
        local_zone(LOCAL_ZONE)
        before = datetime.now(timezone.utc)
        assert main(["resume", str(run.id), "--start-in", "1h"]) == 0
        said = capsys.readouterr().out
        due = pending_resume(read_flow_run(run.id)).at
        assert before + timedelta(hours=1) <= due < before + timedelta(hours=1, minutes=1)
        assert f"resumes by itself at {read_in(LOCAL_ZONE, due)};" in said, said
        assert not ISO_TIME.search(said), said

        # --json: ISO 8601 with its offset, to the second, whatever the local zone.
        assert main(["status", name, "--json"]) == 0
        [status] = json.loads(capsys.readouterr().out)
        times = [status["started_at"], status["resumes_at"], status["last_pause"]["paused_at"]]
        for iso in times:
            moment = datetime.fromisoformat(iso)
            assert moment.utcoffset() is not None and moment.microsecond == 0, iso
        assert datetime.fromisoformat(status["resumes_at"]) == due.replace(microsecond=0)

        for zone in (LOCAL_ZONE, "Asia/Kolkata"):  # UTC-5 (-4 in summer); UTC+5:30
            local_zone(zone)
            assert main(["status", name]) == 0
            shown = capsys.readouterr().out
            started, resumes, paused = (read_in(zone, iso) for iso in times)
            assert f"started {started};" in shown and f"paused {paused} (cli)" in shown, shown
            assert f"resumes by itself at {resumes};" in shown, shown
            assert not ISO_TIME.search(shown), shown
        # The report's pauses, as read where it was written (here Kolkata).
        assert main(["report", name, "--output", str(tmp_path / "report.html")]) == 0
        assert f"<td>{paused}</td><td>cli</td>" in (tmp_path / "report.html").read_text()
    finally:
        cancel_pending_resumes(run.id)


def test_a_run_paused_by_an_earlier_release_is_resumed_with_its_settings_in_their_groups(prefect_server, tmp_path, capsys):
    # Earlier releases stored the study's settings flat, which the study flow no longer binds:
    # `intermission resume` stores them in their groups before the run starts again.
    name = f"flat-{uuid.uuid4().hex[:6]}"
    flat = {"study_name": name, "objective": "tests.objectives:classifier", "n_trials": 3, "max_epochs": 2,
            "storage": f"sqlite:///{tmp_path}/s.db", "pause_policy": None}
    with get_client(sync_client=True) as client:
        deployment_id = client.create_deployment(client.create_flow_from_name(optimize_study.name), name=name)
        run = client.create_flow_run_from_deployment(deployment_id, parameters=flat, name=name)
        client.set_flow_run_state(run.id, Suspended(pause_key=f"{FLOW_PAUSE_KEY_PREFIX}{uuid.uuid4().hex}"), force=True)
    assert main(["resume", str(run.id)]) == 0
    resumed = read_flow_run(run.id)
    assert resumed.parameters == {
        "study_name": name, "objective": "tests.objectives:classifier", "budget": {"n_trials": 3},
        "training": {"max_epochs": 2}, "execution": {"storage": f"sqlite:///{tmp_path}/s.db"},
    }
    assert not resumed.state.is_paused()
    assert study_config_of(resumed).budget.n_trials == 3
