"""End to end: a pod's grace period. SIGTERM reaches the flow's process within a long epoch, the
pause it asks for would come only at the epoch's end, and SIGKILL follows 10 s later. With step
checkpoints on, no finished step is lost: the next run continues after the last one, and the study
and weights are those of a run that was never stopped."""

from __future__ import annotations

import os
import re
import signal
import time
import uuid

import torch

from deployments.ui_actions import process_is_gone, read_run, start_deployment_run, wait_for, wait_for_state
from prefect_intermission.study.state import TRIAL_RESUMPTIONS_ATTR
from prefect_intermission.training.store import CheckpointStore
from tests.e2e.studies import final_weights, run_logs, trials

GRACE_SECONDS = 10  # docker's default; kubernetes' is 30
STEPS_PER_EPOCH, STEP_SECONDS = 8, 2.5  # an epoch longer than the grace period


def _parameters(name: str, tmp_path) -> dict:
    return {
        "study_name": name, "objective": "tests.objectives:slow_stepped_classifier",
        "storage": f"sqlite:///{tmp_path}/studies.db", "checkpoints": str(tmp_path / "checkpoints"),
        "n_trials": 1, "max_epochs": 1, "seed": 11, "sampler": "random", "pruner": "none",
        "checkpoint_every_steps": 1,  # the epoch granularity: SIGTERM's pause waits for the epoch's end
    }


def _stored_steps(checkpoints: str, name: str) -> int:
    state = CheckpointStore(checkpoints).for_trial(name, 0).load_latest_valid().state
    return state["global_step"] if state else 0


def _logged_steps(flow_run_id) -> list[int]:
    """The steps into the epoch each within-epoch checkpoint line of the run says were stored."""
    return [int(n) for n in re.findall(r"Trial 0: checkpoint within epoch 1 of 1, (\d+) steps in", run_logs(flow_run_id))]


def test_sigterm_then_sigkill_after_the_grace_period_loses_no_finished_step(prefect_stack, tmp_path):
    tag = uuid.uuid4().hex[:6]
    storage, checkpoints = f"sqlite:///{tmp_path}/studies.db", str(tmp_path / "checkpoints")
    reference_name, name = f"grace-ref-{tag}", f"grace-{tag}"
    env = {"INTERMISSION_TEST_STEP_SECONDS": str(STEP_SECONDS), "INTERMISSION_LEASE_SECONDS": "2"}
    reference = start_deployment_run("pausable-study/digits-demo", _parameters(reference_name, tmp_path), {"env": env})
    run = start_deployment_run("pausable-study/digits-demo", _parameters(name, tmp_path), {"env": env})

    # The pod is stopped one step into the epoch: SIGTERM, then SIGKILL once the grace period is over.
    wait_for(lambda: _stored_steps(checkpoints, name) >= 1, timeout=180, what="a first step stored", every=0.2)
    running = read_run(run.id)
    pid = int(running.infrastructure_pid.rpartition(":")[2])
    os.kill(pid, signal.SIGTERM)
    time.sleep(GRACE_SECONDS)
    assert not process_is_gone(running), "the pause came within the grace period: nothing to kill"
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: process_is_gone(running), timeout=30, what="the killed process to be gone")

    # Every step the run's log says was stored is in the latest checkpoint (the last line may
    # still have been in the process's queue for the API when it was killed).
    stored, logged = _stored_steps(checkpoints, name), _logged_steps(run.id)
    assert 1 < stored < STEPS_PER_EPOCH, stored
    assert logged == list(range(1, len(logged) + 1)) and stored - 1 <= len(logged) <= stored, (logged, stored)
    assert "SIGTERM: pausing" in run_logs(run.id)

    # The next pod's run continues after the last stored step and matches the uninterrupted run.
    again = start_deployment_run("pausable-study/digits-demo", _parameters(name, tmp_path), {"env": env})
    wait_for_state(again.id, "Completed", timeout=300)
    assert f"continues from its checkpoint: 0 of 1 epochs done, and {stored} steps into epoch 1" in run_logs(again.id)
    [resumption] = trials(storage, name)[0].system_attrs[TRIAL_RESUMPTIONS_ATTR]
    assert (resumption["reason"], resumption["lost_epochs"]) == ("crash", [])
    wait_for_state(reference.id, "Completed", timeout=300)
    [mine], [theirs] = trials(storage, name), trials(storage, reference_name)
    assert (mine.params, mine.intermediate_values, mine.value) == (theirs.params, theirs.intermediate_values, theirs.value)
    a, b = final_weights(checkpoints, name, 0), final_weights(checkpoints, reference_name, 0)
    assert all(torch.equal(a[k], b[k]) for k in b), "the weights differ from the uninterrupted run's"
