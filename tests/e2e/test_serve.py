"""End to end: the study flow served from a script (`optimize_study.serve`), as
docs/concepts/pausing-and-resuming.md shows it: a run of the served deployment pauses, and once resumed the serving process runs it again."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

from optuna.trial import TrialState
from prefect.client.orchestration import get_client
from prefect.exceptions import ObjectNotFound

from deployments.local_stack import PROJECT_ROOT, stop_processes
from deployments.ui_actions import (
    read_run,
    start_deployment_run,
    wait_for,
    wait_for_state,
    wait_until_mid_training,
    wait_until_suspended_by_study,
)
from tests.e2e.studies import trained_epochs, trials

SCRIPT = Path(__file__).with_name("serve_study_script.py")


def _deployment(name: str):
    with get_client(sync_client=True) as client:
        try:
            return client.read_deployment_by_name(name)
        except ObjectNotFound:
            return None


def _intermission(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "prefect_intermission.cli.commands", *args],
        env=env, capture_output=True, text=True, timeout=60,
    )


def test_a_served_study_pauses_and_its_serving_process_runs_it_again(prefect_server, tmp_path):
    name = f"served-{uuid.uuid4().hex[:6]}"
    storage = f"sqlite:///{tmp_path}/studies.db"
    env = {**prefect_server.env, "PREFECT_RUNNER_POLL_FREQUENCY": "1"}  # picks runs up within 1 s, not 10
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        serving = subprocess.Popen(
            [sys.executable, str(SCRIPT), name, name, storage, str(tmp_path / "checkpoints")],
            env=env, cwd=PROJECT_ROOT, stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        deployment = wait_for(lambda: _deployment(f"pausable-study/{name}"), timeout=120, what="the served deployment")
        assert deployment.work_pool_name is None, "a served deployment has no work pool: its process runs it"
        run = start_deployment_run(f"pausable-study/{name}", {})
        wait_for_state(run.id, "Running", timeout=120)  # fails at once if the run fails (e.g. its parameters)
        wait_until_mid_training(storage, name, min_epochs=1, timeout=120)

        paused = _intermission("pause", str(run.id), env=env)
        assert paused.returncode == 0, paused.stderr
        wait_until_suspended_by_study(run.id)
        assert serving.poll() is None, "the serving process keeps running while its run is paused"
        resumed = _intermission("resume", str(run.id), env=env)
        assert resumed.returncode == 0, resumed.stderr
        assert "now: the process serving its deployment picks it up" in resumed.stdout, resumed.stdout

        done = wait_for_state(run.id, "Completed", timeout=180)
    finally:
        stop_processes([serving], timeout=30)

    assert done.run_count == 2, "paused once, then run again by the serving process"
    [trial] = trials(storage, name)
    assert trial.state == TrialState.COMPLETE and len(trial.intermediate_values) == 8
    [resumption] = trial.system_attrs["intermission:resumptions"]
    assert resumption["reason"] == "pause" and resumption["lost_epochs"] == []
    assert max(trained_epochs(run.id).values()) == 1, "an epoch was trained twice"
    assert read_run(run.id).deployment_id == deployment.id
