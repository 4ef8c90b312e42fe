"""End to end: Stop & Save ends a study early, running or suspended, and keeps what it learnt."""

from __future__ import annotations

import re
import uuid

import optuna
import pytest
import torch
from optuna.trial import TrialState

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.objects import State, StateType

from deployments.ui_actions import (
    wait_until_suspended_by_study,
    policy_waiting_for_resume,
    start_deployment_run,
    ui_pause,
    wait_for,
    wait_for_state,
    wait_until_mid_training,
)
from flows.digits import build_model
from prefect_intermission.study.results import best_trial
from prefect_intermission.training.store import CheckpointStore
from tests.e2e.studies import run_logs, trials
from tests.e2e.test_pause_resume import _intermission, _parameters


def _check_stopped(storage: str, name: str, in_flight: list[int]) -> None:
    """Every trial finished; those in flight were recorded pruned with their last epoch's value."""
    study_trials = trials(storage, name)
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study_trials)
    for t in (t for t in study_trials if t.number in in_flight):
        assert t.state == TrialState.PRUNED
        assert t.value == t.intermediate_values[max(t.intermediate_values)]


def _task_run_states(flow_run_id) -> dict[str, State]:
    """The final state of each task run of a flow run, by task run name."""
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return {run.name: run.state for run in runs}


def _completion_logged(flow_run_id) -> str | None:
    logs = run_logs(flow_run_id)
    return logs if "Its best checkpoint" in logs else None


@pytest.mark.parametrize("while_", ["running", "suspended"])
def test_intermission_stop_ends_the_study_early_and_the_run_completes(prefect_stack, tmp_path, while_):
    name = f"stop-{while_}-{uuid.uuid4().hex[:6]}"
    storage = f"sqlite:///{tmp_path}/studies.db"
    # Long trials: the stop lands while one trains.
    parameters = {**_parameters(name, tmp_path), "max_epochs": 30, "pause_policy": policy_waiting_for_resume()}
    run = start_deployment_run("pausable-study/digits-demo", parameters)
    wait_until_mid_training(storage, name, min_epochs=2)
    if while_ == "suspended":
        ui_pause(run.id)
        wait_until_suspended_by_study(run.id)

    stopped = _intermission("stop", name, env=prefect_stack.env)
    assert stopped.returncode == 0, stopped.stderr
    assert f"Stop & Save requested for study {name!r}" in stopped.stdout

    done = wait_for_state(run.id, "Completed", timeout=180)
    assert done.state.is_completed()
    logs = wait_for(lambda: _completion_logged(run.id), timeout=30, what="the completion line on the run's log")
    assert "stopped early (Stop & Save)" in logs
    pruned = re.search(r"Stop & Save: trial\(s\) (.*?) recorded pruned at their last epoch", logs)
    assert pruned, "a trial was in flight when the stop landed"
    in_flight = [int(n) for n in re.findall(r"#(\d+)", pruned.group(1))]
    _check_stopped(storage, name, in_flight)
    assert len(trials(storage, name)) < parameters["n_trials"]  # it ended early
    if while_ == "running":  # the run page shows the trials in flight as stopped, not as errors
        ended = _task_run_states(run.id)
        for number in in_flight:
            assert ended[f"trial-{number}"].type == StateType.COMPLETED, ended
            assert ended[f"trial-{number}"].name == "Stopped"
            assert ended[f"trial-{number}"].message.startswith(f"Trial {number} stopped by Stop & Save: ")

    # The best trial's best epoch: reported with its path, and its weights taken out.
    best = best_trial(optuna.load_study(study_name=name, storage=storage))
    stored = CheckpointStore(parameters["checkpoints"]).for_trial(name, best.number)
    kept = stored.load_best()
    assert kept.best and kept.state["best_metric"] == min(best.intermediate_values.values())
    assert f"Its best checkpoint: {stored.path(kept.epoch)}" in logs
    exported = _intermission("best", name, "--output", str(tmp_path / "model.pt"), env=prefect_stack.env)
    assert exported.returncode == 0, exported.stderr
    weights = torch.load(tmp_path / "model.pt", weights_only=True)
    model = build_model(best.params["channels"], best.params["dropout"])
    model.load_state_dict(weights)  # they fit the model the trial trained
    for key, tensor in kept.state["components"]["model"].items():
        assert torch.equal(weights[key], tensor), key

    again = _intermission("stop", name, env=prefect_stack.env)
    assert again.returncode == 1 and "is Completed" in again.stderr and "nothing to stop" in again.stderr
