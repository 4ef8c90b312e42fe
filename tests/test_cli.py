"""`intermission pause` / `resume`: clear errors for runs they cannot act on."""

from __future__ import annotations

import uuid

import pytest
from prefect import flow

from prefect_intermission.cli.commands import main


@flow
def _finished_flow() -> int:
    return 1


@pytest.fixture
def completed_run_id(prefect_stack) -> str:
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


def test_an_unknown_flow_run_is_reported(prefect_stack, capsys):
    missing = str(uuid.uuid4())
    assert main(["pause", missing]) == 1
    assert f"No flow run {missing}" in capsys.readouterr().err


def test_a_malformed_id_is_reported(capsys):
    assert main(["resume", "not-a-uuid"]) == 1
    assert "'not-a-uuid' is not a flow-run id" in capsys.readouterr().err
