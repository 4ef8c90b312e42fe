"""End to end: one study's trials trained in parallel by two process workers of one work
pool, paused from the UI on both at once (from the study's run, then from one trial's
run), and resumed to completion with every trial and every epoch trained exactly once."""

from __future__ import annotations

import os
import signal
import uuid
from collections import Counter

import optuna
from optuna.trial import TrialState
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags
from prefect.client.schemas.objects import FlowRun

from deployments.ui_actions import (
    process_is_gone,
    read_run,
    policy_waiting_for_resume,
    start_deployment_run,
    ui_pause,
    wait_for,
    wait_for_state,
)
from prefect_intermission import CheckpointStore, request_resume
from prefect_intermission.pausing.run_states import FLOW_PAUSE_KEY_PREFIX
from prefect_intermission.study.state import (
    TRIAL_PAUSED_EPOCH_ATTR,
    TRIAL_RESUMPTIONS_ATTR,
    TRIAL_STATUS_ATTR,
    pause_history,
)
from tests.e2e.studies import run_logs, trained_epochs, trials

N_TRIALS = 3
MAX_EPOCHS = 30
OBJECTIVE = "tests.objectives:slow_classifier"
# Epochs of 1 s on the trial workers: two trial processes may start 20 s apart on a
# loaded machine, and the first must still be mid-training when the pause lands.
TRIAL_WORKER_ENV = {"INTERMISSION_TEST_EPOCH_SECONDS": "1"}
TRIAL_WORKERS = ("trial-worker-a", "trial-worker-b")


def _trial_runs(study_name: str) -> list[FlowRun]:
    """The study's trial runs (the study run tags them `study:<name>`), oldest first."""
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[f"study:{study_name}"]))
        )
    return sorted(runs, key=lambda r: r.created)


def _trial_number(run: FlowRun) -> int:
    return int(run.parameters["trial_number"])


def _parent_pid(run: FlowRun) -> int:
    """The pid of the process that started the run's process: the worker that runs it."""
    pid = int((run.infrastructure_pid or "").rpartition(":")[2])
    with open(f"/proc/{pid}/stat") as stat:
        return int(stat.read().rpartition(")")[2].split()[1])


def test_two_workers_train_in_parallel_pause_together_and_resume_exactly_once(prefect_stack, tmp_path):
    workers = {
        prefect_stack.start_worker(name, work_queues=("trials",), limit=1, env=TRIAL_WORKER_ENV).pid: name
        for name in TRIAL_WORKERS
    }
    try:
        _run_the_study(prefect_stack, tmp_path, workers)
    finally:
        for process in prefect_stack._workers:
            if process.pid in workers:
                process.terminate()


def _run_the_study(prefect_stack, tmp_path, workers: dict[int, str]) -> None:
    study_name = f"workers-{uuid.uuid4().hex[:6]}"
    storage = f"sqlite:///{tmp_path}/studies.db"
    checkpoints = str(tmp_path / "checkpoints")
    run = start_deployment_run(
        "pausable-study/digits-demo",
        {
            "study_name": study_name,
            "objective": OBJECTIVE,
            "storage": storage,
            "checkpoints": checkpoints,
            "n_trials": N_TRIALS,
            "max_epochs": MAX_EPOCHS,
            "max_concurrent_trials": 2,
            "seed": 3,
            "trial_deployment": "pausable-trial/train-trial",
            "pause_policy": policy_waiting_for_resume(),  # resumed by hand, not by the dialog's timeout
        },
    )

    # Two trials train at the same time, each in a flow run of its own on its own worker.
    def both_mid_training() -> list[FlowRun] | None:
        running = [r for r in _trial_runs(study_name) if r.state and r.state.is_running()]
        if len(running) < 2:
            return None
        epochs = {
            t.number: len(t.intermediate_values)
            for t in trials(storage, study_name) if t.state == TrialState.RUNNING
        }
        return running if all(epochs.get(_trial_number(r), 0) >= 2 for r in running) else None

    running = wait_for(both_mid_training, timeout=300, what="two trials mid-training at once")
    on_workers = {workers.get(_parent_pid(r)) for r in running}
    assert on_workers == set(TRIAL_WORKERS), f"trial runs' parent processes: {on_workers}"
    mid_training = sorted(_trial_number(r) for r in running)

    # The UI's Pause on the study run reaches both trials, on both workers.
    ui_pause(run.id, timeout_seconds=300)

    def suspended_by_study() -> FlowRun | None:
        current = read_run(run.id)
        key = current.state.state_details.pause_key or ""
        return current if current.state.name == "Suspended" and key.startswith(FLOW_PAUSE_KEY_PREFIX) else None

    suspended = wait_for(suspended_by_study, timeout=180, what="the study to suspend its run")
    assert suspended.state.state_details.pause_timeout is None  # the UI's 5 minutes lifted
    wait_for(lambda: process_is_gone(suspended), timeout=60, what="the study's process to exit")
    first_runs = _trial_runs(study_name)
    for trial_run in first_runs:
        assert trial_run.state.name in ("Paused", "Completed"), (trial_run.name, trial_run.state)
        wait_for(lambda: process_is_gone(trial_run), timeout=60, what="a trial's process to exit")
    assert sorted(_trial_number(r) for r in first_runs if r.state.name == "Paused") == mid_training
    store = CheckpointStore(checkpoints)
    paused = [t for t in trials(storage, study_name) if t.state == TrialState.RUNNING]
    assert sorted(t.number for t in paused) == mid_training
    for t in paused:
        assert t.system_attrs[TRIAL_STATUS_ATTR] == "paused"
        last = t.system_attrs[TRIAL_PAUSED_EPOCH_ATTR]
        assert last == len(t.intermediate_values) - 1 and last < MAX_EPOCHS - 1, "paused mid-training"
        assert store.for_trial(study_name, t.number).epochs()[-1] == last  # its checkpoint is stored
    study = optuna.load_study(study_name=study_name, storage=storage)
    assert [p["reason"] for p in pause_history(study)] == ["ui"]
    assert pause_history(study)[0]["trials"] == {
        str(t.number): t.system_attrs[TRIAL_PAUSED_EPOCH_ATTR] for t in paused
    }

    # Resume, then pause again from one trial's own run: that pauses the whole study.
    first_ids = {r.id for r in first_runs}
    paused_after = {t.number: t.system_attrs[TRIAL_PAUSED_EPOCH_ATTR] for t in paused}
    request_resume(run.id)

    def continued_mid_training() -> list[FlowRun] | None:
        continued = [
            r for r in _trial_runs(study_name)
            if r.id not in first_ids and r.state is not None and r.state.is_running()
            and _trial_number(r) in paused_after  # not a new trial started meanwhile
        ]
        epochs = {t.number: len(t.intermediate_values) for t in trials(storage, study_name)}
        trained = [r for r in continued if epochs[_trial_number(r)] >= paused_after[_trial_number(r)] + 3]
        return trained if len(trained) == 2 else None

    second_runs = wait_for(continued_mid_training, timeout=300, what="both paused trials to continue")
    assert sorted(_trial_number(r) for r in second_runs) == mid_training
    ui_pause(second_runs[0].id, timeout_seconds=300)
    suspended = wait_for(suspended_by_study, timeout=180, what="the study to suspend its run again")
    for trial_run in second_runs:
        ended = read_run(trial_run.id)
        assert ended.state.name == "Paused", (ended.name, ended.state)
        wait_for(lambda: process_is_gone(ended), timeout=60, what="a trial's process to exit")
    study = optuna.load_study(study_name=study_name, storage=storage)
    assert [p["reason"] for p in pause_history(study)] == ["ui", "ui"]
    assert sorted(int(n) for n in pause_history(study)[1]["trials"]) == mid_training

    # Resume: the study completes, each paused trial continued by exactly one new trial run.
    request_resume(run.id)
    wait_for_state(run.id, "Completed", timeout=600)
    done = trials(storage, study_name)
    assert [t.number for t in done] == list(range(N_TRIALS))
    assert all(t.state == TrialState.COMPLETE for t in done), [t.state for t in done]
    assert all(sorted(t.intermediate_values) == list(range(MAX_EPOCHS)) for t in done)
    runs = _trial_runs(study_name)
    assert Counter(_trial_number(r) for r in runs) == {
        n: 3 if n in mid_training else 1 for n in range(N_TRIALS)
    }
    earlier = first_ids | {r.id for r in second_runs}
    assert all(r.state.name == "Completed" for r in runs if r.id not in earlier)

    # Every epoch of every trial was trained exactly once, across all the trial runs.
    expected = {(n, e) for n in range(N_TRIALS) for e in range(MAX_EPOCHS)}

    _each_epoch_trained_once(runs, expected)



def _one_trial_study(prefix: str, tmp_path, *, max_epochs: int) -> tuple[str, str, FlowRun]:
    """A new one-trial study started with trial runs: its name, storage and study run."""
    study_name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    storage = f"sqlite:///{tmp_path}/studies.db"
    run = start_deployment_run("pausable-study/digits-demo", {
        "study_name": study_name, "objective": OBJECTIVE, "storage": storage,
        "checkpoints": str(tmp_path / "checkpoints"), "n_trials": 1, "max_epochs": max_epochs, "seed": 3,
        "trial_deployment": "pausable-trial/train-trial",
    })
    return study_name, storage, run


def _trial_run_mid_training(study_name: str, storage: str, *, min_epochs: int) -> FlowRun:
    """The study's one trial run, once it is Running and its trial reported `min_epochs`."""
    def mid_training() -> FlowRun | None:
        running = [r for r in _trial_runs(study_name) if r.state and r.state.is_running()]
        if not running:  # the study may not even be created yet
            return None
        epochs = [len(t.intermediate_values) for t in trials(storage, study_name)]
        return running[0] if epochs and epochs[0] >= min_epochs else None

    return wait_for(mid_training, timeout=300, what="the trial run mid-training")


def test_a_trial_run_whose_machine_vanished_pauses_the_study_and_continues_on_another(prefect_stack, tmp_path):
    # The trial's claim lasts 2 s on this worker, so a vanished machine shows within seconds.
    lost = prefect_stack.start_worker("trial-worker-lost", work_queues=("trials",), limit=1,
                                      env={"INTERMISSION_LEASE_SECONDS": "2"})
    study_name, storage, run = _one_trial_study("vanished", tmp_path, max_epochs=12)
    replacement = None
    try:
        trial_run = _trial_run_mid_training(study_name, storage, min_epochs=2)
        # The machine goes away: its worker and the trial's process die, and nobody reports it.
        lost.kill()
        lost.wait()
        os.kill(int(trial_run.infrastructure_pid.rpartition(":")[2]), signal.SIGKILL)

        def suspended_by_study() -> FlowRun | None:
            current = read_run(run.id)
            key = current.state.state_details.pause_key or ""
            return current if current.state.name == "Suspended" and key.startswith(FLOW_PAUSE_KEY_PREFIX) else None

        wait_for(suspended_by_study, timeout=120, what="the study to pause after losing its trial run")
        assert read_run(trial_run.id).state.name == "Crashed"
        study = optuna.load_study(study_name=study_name, storage=storage)
        assert [p["reason"] for p in pause_history(study)] == ["trial-run-stopped"]
        trained_before = len(study.trials[0].intermediate_values)

        replacement = prefect_stack.start_worker("trial-worker-new", work_queues=("trials",), limit=1)
        request_resume(run.id)
        wait_for_state(run.id, "Completed", timeout=300)
    finally:
        for worker in (lost, replacement):
            if worker is not None:
                worker.kill()
    (trial,) = trials(storage, study_name)
    assert trial.state in (TrialState.COMPLETE, TrialState.PRUNED)
    record = trial.system_attrs[TRIAL_RESUMPTIONS_ATTR][-1]
    assert record["from_epoch"] is not None and record["from_epoch"] >= trained_before - 2, record
    assert len(record["lost_epochs"]) <= 1, "more than the epoch in progress was lost"


def test_a_second_ctrl_c_on_the_study_run_lists_the_trials_its_trial_runs_pause(prefect_stack, tmp_path):
    # 6 s epochs: the second Ctrl+C comes while the trial run is still in its epoch.
    worker = prefect_stack.start_worker("trial-worker-slow", work_queues=("trials",), limit=1,
                                        env={"INTERMISSION_TEST_EPOCH_SECONDS": "6"})
    study_name, storage, run = _one_trial_study("ctrl-c-runs", tmp_path, max_epochs=6)
    try:
        trial_run = _trial_run_mid_training(study_name, storage, min_epochs=1)
        study_run = read_run(run.id)
        study_pid = int(study_run.infrastructure_pid.rpartition(":")[2])
        os.kill(study_pid, signal.SIGINT)
        wait_for(lambda: "Ctrl+C: pausing" in run_logs(run.id), timeout=60, what="the first Ctrl+C to be taken")
        os.kill(study_pid, signal.SIGINT)

        wait_for(lambda: process_is_gone(study_run), timeout=60, what="the study run's process to exit")
        assert "stopped at once (second Ctrl+C)" in run_logs(run.id)
        assert read_run(run.id).state.is_paused()
        stop = pause_history(optuna.load_study(study_name=study_name, storage=storage))[-1]
        assert stop["reason"] == "signal"
        assert list(stop["trials"]) == ["0"], "the trial its trial run pauses is listed"
        # The trial run was not stopped: it finishes its epoch and pauses at the boundary.
        wait_for(lambda: read_run(trial_run.id).state.is_final(), timeout=120, what="the trial run to pause")
        (trial,) = trials(storage, study_name)
        assert trial.system_attrs[TRIAL_STATUS_ATTR] == "paused"
        assert trial.system_attrs[TRIAL_PAUSED_EPOCH_ATTR] >= stop["trials"]["0"]

        request_resume(run.id)
        wait_for_state(run.id, "Completed", timeout=300)
    finally:
        worker.kill()
    (trial,) = trials(storage, study_name)
    assert trial.state in (TrialState.COMPLETE, TrialState.PRUNED)
    assert trial.system_attrs[TRIAL_RESUMPTIONS_ATTR][-1]["lost_epochs"] == [], "the trial run lost no epoch"


def test_a_pause_rule_met_in_a_trial_run_pauses_the_study_at_that_very_epoch(prefect_stack, tmp_path):
    # tests.e2e.studies:countdown: trial 0's epoch e reports 10 - e, trial 1's 20 - e. At
    # 7.5, trial 0 reaches the threshold at epoch 3 (of 0..5), and trial 1 never does.
    max_epochs, rule_epoch = 6, 3
    rule = {"rule": "prefect_intermission.pausing.rules:metric_threshold", "threshold": 7.5}
    worker = prefect_stack.start_worker("trial-worker-rule", work_queues=("trials",), limit=1, env=TRIAL_WORKER_ENV)
    study_name = f"ruled-runs-{uuid.uuid4().hex[:6]}"
    storage = f"sqlite:///{tmp_path}/studies.db"
    checkpoints = str(tmp_path / "checkpoints")
    try:
        run = start_deployment_run("pausable-study/digits-demo", {
            "study_name": study_name, "objective": "tests.e2e.studies:countdown", "storage": storage,
            "checkpoints": checkpoints, "n_trials": 2, "max_epochs": max_epochs, "max_concurrent_trials": 1,
            "seed": 3, "pause_rules": [rule], "trial_deployment": "pausable-trial/train-trial",
        })

        def suspended_by_study() -> FlowRun | None:
            current = read_run(run.id)
            key = current.state.state_details.pause_key or ""
            return current if current.state.name == "Suspended" and key.startswith(FLOW_PAUSE_KEY_PREFIX) else None

        suspended = wait_for(suspended_by_study, timeout=300, what="the rule to suspend the study's run")
        wait_for(lambda: process_is_gone(suspended), timeout=60, what="the study's process to exit")
        (trial_run,) = _trial_runs(study_name)  # trial 1 was never started
        first_run = wait_for(lambda: (r := read_run(trial_run.id)).state.is_final() and r, timeout=60,
                             what="the trial run to end")
        assert first_run.state.name == "Paused", first_run.state

        # The pause names the rule's words and trial 0 after the very epoch that met it.
        (pause,) = pause_history(optuna.load_study(study_name=study_name, storage=storage))
        assert pause["reason"].startswith("rule: trial 0 reached metric"), pause
        assert pause["reason"] == "rule: trial 0 reached metric 7 (<= 7.5)"
        assert pause["trials"] == {"0": rule_epoch}
        (trial,) = trials(storage, study_name)
        assert trial.state == TrialState.RUNNING and trial.system_attrs[TRIAL_STATUS_ATTR] == "paused"
        assert trial.system_attrs[TRIAL_PAUSED_EPOCH_ATTR] == rule_epoch, "paused one epoch late"
        assert sorted(trial.intermediate_values) == list(range(rule_epoch + 1))
        assert CheckpointStore(checkpoints).for_trial(study_name, 0).epochs()[-1] == rule_epoch

        # Resumed, trial 0 trains on from the next epoch: the rule, met once, does not pause again.
        request_resume(run.id)
        wait_for_state(run.id, "Completed", timeout=300)
    finally:
        worker.kill()
    done = trials(storage, study_name)
    assert [(t.number, t.state) for t in done] == [(0, TrialState.COMPLETE), (1, TrialState.COMPLETE)]
    assert all(sorted(t.intermediate_values) == list(range(max_epochs)) for t in done)
    record = done[0].system_attrs[TRIAL_RESUMPTIONS_ATTR][-1]
    assert (record["reason"], record["from_epoch"], record["lost_epochs"]) == ("pause", rule_epoch, [])
    assert len(pause_history(optuna.load_study(study_name=study_name, storage=storage))) == 1
    runs = _trial_runs(study_name)
    assert [_trial_number(r) for r in runs] == [0, 0, 1]
    assert all(r.state.name == "Completed" for r in runs[1:]), [r.state for r in runs]

    # Every epoch of each trial was trained once: trial 0's first run stopped right after the rule's epoch.
    assert trained_epochs(first_run.id, at_least=rule_epoch + 1) == Counter(
        {(0, e): 1 for e in range(rule_epoch + 1)})
    expected = {(n, e) for n in range(2) for e in range(max_epochs)}

    _each_epoch_trained_once(runs, expected)


def _each_epoch_trained_once(runs: list, expected: set[tuple[int, int]]) -> None:
    """Across the trial runs' log lines, each (trial, epoch) of `expected` was trained exactly once."""

    def all_epoch_lines() -> Counter[tuple[int, int]] | None:
        counts: Counter[tuple[int, int]] = Counter()
        for r in runs:
            counts.update(trained_epochs(r.id))
        return counts if set(counts) == expected else None

    counts = wait_for(all_epoch_lines, timeout=60, what="the trial runs' epoch log lines")
    assert max(counts.values()) == 1, {k: v for k, v in counts.items() if v > 1}
