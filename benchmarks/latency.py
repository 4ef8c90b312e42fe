"""Pause and resume latency of a study run through the `digits-demo` deployment on a real
Prefect server and process worker, and how resume latency grows with the study's history.

Every instant comes from something observable: this process's clock around the UI's
API calls, the flow-run states the server records (with their timestamps), the run's
log lines in the Prefect API (stamped when the flow's process wrote them), and the
flow's process disappearing from /proc. All on one machine, so one clock.
"""

from __future__ import annotations

import random
import re
import time
from datetime import datetime, timezone
from typing import Any
from uuid import UUID

import optuna
from optuna.distributions import FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from prefect.client.schemas.sorting import LogSort

from deployments.ui_actions import (
    read_run,
    policy_waiting_for_resume,
    start_deployment_run,
    ui_pause,
    ui_resume,
    wait_for,
    wait_for_state,
)
from prefect_intermission.pausing.run_states import FLOW_PAUSE_KEY_PREFIX
from prefect_intermission.study.state import TRIAL_PAUSED_EPOCH_ATTR, TRIAL_STATUS_ATTR

DEPLOYMENT = "pausable-study/digits-demo"
DISTRIBUTIONS = {
    "lr": FloatDistribution(1e-3, 0.3, log=True),
    "channels": IntDistribution(4, 16),
    "dropout": FloatDistribution(0.0, 0.5),
}


def now() -> datetime:
    return datetime.now(timezone.utc)


def add_finished_trials(storage: str, study_name: str, count: int, max_epochs: int) -> None:
    """Give a new study `count` finished trials of the demo's search space, without training them."""
    study = optuna.create_study(study_name=study_name, storage=storage, direction="minimize")
    rng = random.Random(count)
    trials = []
    for _ in range(count):
        params = {"lr": 10 ** rng.uniform(-3, -0.53), "channels": rng.randint(4, 16), "dropout": rng.uniform(0, 0.5)}
        # A learning curve of up to 10 reported epochs: enough for the pruner to read.
        curve = {epoch: 2.0 / (epoch + 1) + rng.random() * 0.1 for epoch in range(min(max_epochs, 10))}
        trials.append(create_trial(
            params=params, distributions=DISTRIBUTIONS, value=curve[max(curve)],
            intermediate_values=curve, state=TrialState.COMPLETE,
        ))
    study.add_trials(trials)


def _logs(flow_run_id: UUID) -> list[Any]:
    out: list[Any] = []
    with get_client(sync_client=True) as client:
        while True:
            page = client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])),
                limit=200, offset=len(out), sort=LogSort.TIMESTAMP_ASC,
            )
            out += page
            if len(page) < 200:
                return out


def _log_time(flow_run_id: UUID, pattern: str, after: datetime, timeout: float = 120) -> datetime:
    """When the run's first log line matching `pattern`, written after `after`, was written."""
    regex = re.compile(pattern)

    def find() -> datetime | None:
        for log in _logs(flow_run_id):
            if log.timestamp >= after and regex.search(log.message):
                return log.timestamp
        return None

    return wait_for(find, timeout=timeout, what=f"a log line matching {pattern!r}", every=0.25)


def _pid(flow_run_id: UUID, *, other_than: int = 0) -> int:
    """The process id of the process running the flow run (a new one, if `other_than` is given)."""

    def known() -> int:
        run = read_run(flow_run_id)
        pid = int((run.infrastructure_pid or "").rpartition(":")[2] or 0)
        return pid if pid != other_than else 0

    return wait_for(known, timeout=60, what="the flow run's process id")


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[-1].startswith("Z")
    except FileNotFoundError:
        return True


def _paused_trial(storage: str, study_name: str) -> tuple[int, int]:
    study = optuna.load_study(study_name=study_name, storage=storage)
    paused = [
        t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if t.system_attrs.get(TRIAL_STATUS_ATTR) == "paused"
        and t.system_attrs.get(TRIAL_PAUSED_EPOCH_ATTR) is not None
    ]
    if not paused:
        raise RuntimeError(f"No trial of {study_name} was paused mid-training.")
    trial = paused[-1]
    return trial.number, int(trial.system_attrs[TRIAL_PAUSED_EPOCH_ATTR])


def pause_resume_cycle(
    *, storage: str, checkpoints: str, study_name: str, history: int, max_epochs: int
) -> dict[str, float]:
    """Run a study with `history` finished trials, pause it mid-trial, resume it; time both."""
    add_finished_trials(storage, study_name, history, max_epochs)
    run = start_deployment_run(DEPLOYMENT, {
        "study_name": study_name, "objective": "flows.digits:objective", "storage": storage,
        "checkpoints": checkpoints, "n_trials": history + 1, "max_epochs": max_epochs,
        "max_concurrent_trials": 1, "seed": 0,
        "pruner": "none",  # the made-up history must not prune the trial before it pauses
        "pause_policy": policy_waiting_for_resume(),  # resumed by the bench, not by the dialog's timeout
    })

    def training() -> bool:
        study = optuna.load_study(study_name=study_name, storage=storage)
        return any(len(t.intermediate_values) >= 2
                   for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))

    wait_for(training, timeout=300, what=f"{study_name}'s new trial to be training", every=0.1)
    pid = _pid(run.id)

    # Pause, as the UI's button does; the flow's process exiting ends it.
    requested = now()
    ui_pause(run.id)
    wait_for(lambda: _gone(pid), timeout=120, what="the flow's process to exit", every=0.01)
    exited = now()
    wait_for_state(run.id, "Suspended", timeout=60)
    number, epoch = _paused_trial(storage, study_name)
    stored = _log_time(run.id, rf"Trial {number} finished epoch {epoch + 1} of ", requested)
    with get_client(sync_client=True) as client:
        suspended = max(  # the study's own suspension, after its pause was recorded
            s.timestamp for s in client.read_flow_run_states(run.id)
            if s.name == "Suspended" and (s.state_details.pause_key or "").startswith(FLOW_PAUSE_KEY_PREFIX)
        )

    # Resume, as the UI's button does; the resumed trial's first step ends it.
    resumed = now()
    ui_resume(run.id)
    continued = _log_time(run.id, rf"Trial {number} continues from its checkpoint: {epoch + 1} of ", resumed)
    loaded = _log_time(run.id, r"Continuing study", resumed)
    with get_client(sync_client=True) as client:
        states = sorted(client.read_flow_run_states(run.id), key=lambda s: s.timestamp)
    pending = next(s.timestamp for s in states if s.timestamp >= resumed and s.type.value == "PENDING")
    running = next(s.timestamp for s in states if s.timestamp >= pending and s.type.value == "RUNNING")
    # Done measuring: pause it again rather than train the rest of the trial.
    new_pid = _pid(run.id, other_than=pid)
    ui_pause(run.id)
    wait_for(lambda: _gone(new_pid), timeout=120, what="the resumed flow's process to exit", every=0.1)

    seconds = lambda a, b: (b - a).total_seconds()  # noqa: E731
    return {
        "history": history,
        "pause_request_to_checkpoint_s": seconds(requested, stored),
        "pause_checkpoint_to_exit_s": seconds(stored, exited),
        "pause_request_to_exit_s": seconds(requested, exited),
        "pause_checkpoint_to_suspended_s": seconds(stored, suspended),
        "pause_suspended_to_exit_s": seconds(suspended, exited),
        "resume_total_s": seconds(resumed, continued),
        "worker_pickup_s": seconds(resumed, pending),
        "process_start_s": seconds(pending, running),
        "study_load_s": seconds(running, loaded),
        "checkpoint_load_s": seconds(loaded, continued),
    }
