"""End to end: a study run executed as Prefect's kubernetes worker executes it, with
`prefect flow-run execute` and `PREFECT_FLOW_RUN_EXECUTE_SIGTERM_BEHAVIOR=reschedule`: SIGTERM
(a pod being evicted) stores the pause and leaves the run Scheduled; the next execution, in
another working directory (another pod), continues every trial with nothing trained twice."""

from __future__ import annotations

import signal
import subprocess
import sys
import uuid

import optuna
from optuna.trial import TrialState
from prefect.client.orchestration import get_client
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectAlreadyExists

from deployments.local_stack import WORK_POOL
from deployments.ui_actions import read_run, study_parameters, wait_until_mid_training
from prefect_intermission.study.state import TRIAL_PAUSED_EPOCH_ATTR, TRIAL_RESUMPTIONS_ATTR, pause_history
from tests.e2e.studies import run_logs, trained_epochs, trials

#: A queue no worker serves: the test executes the run itself, as an orchestrator's pod would.
POD_QUEUE = "pods"


def _pod_queue() -> str:
    with get_client(sync_client=True) as client:
        try:
            client.create_work_queue(POD_QUEUE, work_pool_name=WORK_POOL)
        except ObjectAlreadyExists:
            pass
    return POD_QUEUE


def _pod(flow_run_id, env, cwd) -> subprocess.Popen[str]:
    """What a kubernetes worker's pod runs: `prefect flow-run execute`, rescheduling on SIGTERM."""
    return subprocess.Popen(
        [sys.executable, "-m", "prefect", "flow-run", "execute", str(flow_run_id)],
        env={**env, "PREFECT_FLOW_RUN_EXECUTE_SIGTERM_BEHAVIOR": "reschedule"},
        cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def test_sigterm_under_flow_run_execute_reschedules_and_the_next_pod_continues_every_trial(prefect_stack, tmp_path):
    name = f"evicted-{uuid.uuid4().hex[:6]}"
    storage = f"sqlite:///{tmp_path}/studies.db"
    run = run_deployment(
        "pausable-study/digits-demo", timeout=0, as_subflow=False, work_queue_name=_pod_queue(),
        parameters=study_parameters("pausable-study/digits-demo", {
            "study_name": name,
            "objective": "tests.objectives:slow_classifier",
            "storage": storage,
            "checkpoints": str(tmp_path / "checkpoints"),
            "n_trials": 2,
            "max_epochs": 10,
            "seed": 3,
        }),
    )
    first_pod, second_pod = tmp_path / "pod-1", tmp_path / "pod-2"
    first_pod.mkdir()
    second_pod.mkdir()
    env = {**prefect_stack.env, "INTERMISSION_TEST_EPOCH_SECONDS": "0.5"}

    pod = _pod(run.id, env, first_pod)
    try:
        wait_until_mid_training(storage, name, min_epochs=2, timeout=180)
        pod.send_signal(signal.SIGTERM)  # the kubelet evicts the pod
        output, _ = pod.communicate(timeout=120)
    finally:
        pod.kill()
    assert pod.returncode == 0, output[-3000:]
    assert "Flow run successfully rescheduled" in output, output[-3000:]

    state = read_run(run.id).state
    assert state.is_scheduled(), f"{state.name}: {state.message}"
    (pause,) = pause_history(optuna.load_study(study_name=name, storage=storage))
    assert pause["reason"] == "signal"
    paused = {t.number: t.system_attrs[TRIAL_PAUSED_EPOCH_ATTR] for t in trials(storage, name)
              if t.state == TrialState.RUNNING}
    assert paused, "a trial was mid-training when SIGTERM came"
    assert pause["trials"] == {str(n): e for n, e in paused.items()}
    assert "SIGTERM from `prefect flow-run execute` (reschedule): pausing" in run_logs(run.id)

    again = subprocess.run(
        [sys.executable, "-m", "prefect", "flow-run", "execute", str(run.id)],
        env=env, cwd=second_pod, capture_output=True, text=True, timeout=300,
    )
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert read_run(run.id).state.name == "Completed"
    done = trials(storage, name)
    assert [t.state for t in done] == [TrialState.COMPLETE, TrialState.COMPLETE]
    reported = sum(len(t.intermediate_values) for t in done)
    counts = trained_epochs(run.id, at_least=reported)
    assert len(counts) == reported, "an epoch was lost"
    assert max(counts.values()) == 1, f"epochs trained twice: {[e for e, n in counts.items() if n > 1]}"
    for number, epoch in paused.items():
        record = done[number].system_attrs[TRIAL_RESUMPTIONS_ATTR][-1]
        assert (record["reason"], record["from_epoch"], record["lost_epochs"]) == ("pause", epoch, [])
