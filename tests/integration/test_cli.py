"""`intermission pause` / `resume`: clear errors for runs they cannot act on."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest
from prefect import flow

from prefect_intermission import optimize_study
from prefect_intermission.cli.commands import main
from prefect_intermission.study.flow_runs import latest_runs


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
