"""End to end: a study run as a plain script stops cleanly on a pause and continues when run again."""

from __future__ import annotations

import shlex
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from optuna.trial import TrialState
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

from deployments.local_stack import PROJECT_ROOT
from deployments.ui_actions import read_run, wait_for, wait_until_mid_training
from tests.e2e.studies import trained_epochs, trials

pytestmark = pytest.mark.e2e
SCRIPT = Path(__file__).with_name("run_study_script.py")


def _flow_run_named(name: str):
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[name])))
    return runs[0] if runs else None


def test_a_script_run_pauses_cleanly_and_prints_the_command_that_continues_it(prefect_stack, tmp_path):
    study_name = f"script-{uuid.uuid4().hex[:6]}"
    storage = f"sqlite:///{tmp_path}/studies.db"
    command = [sys.executable, str(SCRIPT), study_name, storage, str(tmp_path / "checkpoints")]
    process = subprocess.Popen(
        command, env=prefect_stack.env, cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        wait_until_mid_training(storage, study_name, min_epochs=1, timeout=120)
        flow_run = wait_for(lambda: _flow_run_named(study_name), timeout=30, what="the flow run")
        paused = subprocess.run(
            [sys.executable, "-m", "prefect_intermission.cli", "pause", str(flow_run.id)],
            env=prefect_stack.env, capture_output=True, text=True, timeout=60,
        )
        assert paused.returncode == 0, paused.stderr
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()

    assert process.returncode == 0, stderr
    assert "cannot be suspended" in stderr
    assert shlex.join(command) in stderr
    assert read_run(flow_run.id).state.name == "Paused"
    stopped = [t for t in trials(storage, study_name) if t.state == TrialState.RUNNING]
    assert stopped and all(t.system_attrs["intermission:status"] == "paused" for t in stopped)

    printed = stderr[stderr.index(shlex.join(command)):].splitlines()[0]
    again = subprocess.run(
        shlex.split(printed), env=prefect_stack.env, cwd=PROJECT_ROOT,
        capture_output=True, text=True, timeout=300,
    )
    assert again.returncode == 0, again.stderr
    finished = trials(storage, study_name)
    assert [t.number for t in finished] == [0, 1]
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in finished)
    second_run = [r for r in _all_runs(study_name) if r.id != flow_run.id][0]
    first_epochs, second_epochs = trained_epochs(flow_run.id), trained_epochs(second_run.id)
    assert not set(first_epochs) & set(second_epochs), "an epoch was trained again"


def _all_runs(name: str):
    with get_client(sync_client=True) as client:
        return client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[name])))
