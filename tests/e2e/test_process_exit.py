"""End to end: once a pause is carried out the flow's process ends at once, skipping the
interpreter's teardown, yet the run's page shows every log line and state, and the exit hooks
of the user's code still run; a run that completes exits as it always did."""

from __future__ import annotations

import uuid


from deployments.ui_actions import (
    wait_until_suspended_by_study,
    policy_waiting_for_resume,
    process_is_gone,
    read_run,
    start_deployment_run,
    ui_pause,
    ui_resume,
    wait_for,
    wait_for_state,
    wait_until_mid_training,
)
from tests.e2e.studies import run_logs


def _pid(run) -> int:
    return int(run.infrastructure_pid.rpartition(":")[2])


def test_a_paused_process_ends_at_once_with_its_logs_and_exit_hooks(prefect_stack, tmp_path):
    name, storage, marks = f"exit-{uuid.uuid4().hex[:6]}", f"sqlite:///{tmp_path}/studies.db", tmp_path / "marks"
    marks.mkdir()
    run = start_deployment_run(
        "pausable-study/digits-demo",
        {
            "study_name": name, "objective": "tests.objectives:slow_classifier_with_exit_marks",
            "storage": storage, "checkpoints": str(tmp_path / "checkpoints"), "n_trials": 1, "max_epochs": 6,
            "seed": 1, "pruner": "none", "pause_policy": policy_waiting_for_resume(),
        },
        {"env": {"INTERMISSION_TEST_EXIT_DIR": str(marks), "INTERMISSION_TEST_EPOCH_SECONDS": "0.5"}},
    )
    wait_until_mid_training(storage, name, min_epochs=2)
    paused_pid = _pid(read_run(run.id))
    ui_pause(run.id)
    suspended = wait_until_suspended_by_study(run.id)
    wait_for(lambda: process_is_gone(suspended), timeout=60, what="the flow's process to exit")

    logs = run_logs(run.id)
    assert "Suspending the flow run" in logs and "Finished in state Suspended" in logs, logs[-2000:]
    assert "exited with status code" not in logs  # exit code 0: the worker left the run alone
    assert read_run(run.id).state.name == "Suspended"
    assert (marks / f"exit-hook-{paused_pid}").exists(), "the objective's atexit hook did not run"
    assert not (marks / f"torn-down-{paused_pid}").exists(), "the interpreter tore its modules down"

    ui_resume(run.id)
    wait_for_state(run.id, "Completed", timeout=300)
    resumed_pid = _pid(read_run(run.id))
    assert resumed_pid != paused_pid
    wait_for(lambda: (marks / f"torn-down-{resumed_pid}").exists(), timeout=30,
             what="the completed run's process to tear down as usual")
    assert (marks / f"exit-hook-{resumed_pid}").exists()
