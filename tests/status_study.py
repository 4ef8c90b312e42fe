"""One study driven through the demo deployment, paused from the UI, scheduled to resume later,
running again, and completed; what `intermission status --json` said at each stage, and what was really there.

The status and report tests share it: driving a study takes minutes, so it is driven once
per test session, the first time a test asks for it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from prefect.client.orchestration import get_client
from prefect.states import Scheduled

from deployments.local_stack import LocalPrefect
from deployments.ui_actions import (
    policy_waiting_for_resume,
    process_is_gone,
    read_run,
    start_deployment_run,
    ui_pause,
    wait_for,
    wait_for_state,
    wait_until_mid_training,
)
from prefect_intermission.pausing.run_states import FLOW_PAUSE_KEY_PREFIX
from prefect_intermission.study.state import TRIAL_STATUS_ATTR

N_TRIALS = 3
MAX_EPOCHS = 10
RESUME_DELAY_SECONDS = 25
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


@dataclass
class Snapshot:
    """What `status --json` printed, and the study's Optuna trials read right after."""

    status: dict[str, Any]
    trials: list[FrozenTrial]
    checkpoint_files: dict[str, int] = field(default_factory=dict)


@dataclass
class DrivenStudy:
    name: str
    storage: str
    checkpoints: Path
    flow_run_id: str
    env: dict[str, str]
    started: datetime
    running: Snapshot
    paused: Snapshot
    scheduled: Snapshot
    resume_at: datetime
    completed: Snapshot
    table: str
    paused_table: str


_driven: dict[str, DrivenStudy] = {}


def intermission(*args: str, env: dict[str, str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the `intermission` command as a user does."""
    return subprocess.run(
        [sys.executable, "-m", "prefect_intermission.cli.commands", *args],
        env={**env, "COLUMNS": "200"}, capture_output=True, text=True, timeout=180, cwd=cwd,
    )


def status_json(target: str, env: dict[str, str]) -> dict[str, Any]:
    """`intermission status TARGET --json`: the one study it lists."""
    done = intermission("status", target, "--json", env=env)
    assert done.returncode == 0, done.stderr
    listed = json.loads(done.stdout)
    assert len(listed) == 1, listed
    return listed[0]


def checkpoint_files(folder: Path) -> dict[str, int]:
    """Every checkpoint file under a study's checkpoint folder, with its size on disk."""
    return {str(p): p.stat().st_size for p in sorted(folder.glob("trial-*/epoch-*.pt"))}


def _snapshot(target: str, study: DrivenStudy | dict[str, Any]) -> Snapshot:
    env, storage, name, folder = (study[k] for k in ("env", "storage", "name", "folder"))  # type: ignore[index]
    status = status_json(target, env)
    trials = optuna.load_study(study_name=name, storage=storage).get_trials()
    return Snapshot(status, trials, checkpoint_files(folder))


def driven_study(stack: LocalPrefect, workdir: Path) -> DrivenStudy:
    """The session's driven study (driven now if no test asked for it yet)."""
    if "study" not in _driven:
        _driven["study"] = _drive(stack, workdir)
    return _driven["study"]


def _drive(stack: LocalPrefect, workdir: Path) -> DrivenStudy:
    name = f"status-{uuid.uuid4().hex[:6]}"
    storage = f"sqlite:///{workdir}/studies.db"
    checkpoints = workdir / "checkpoints"
    ctx = {"env": stack.env, "storage": storage, "name": name, "folder": checkpoints / name}
    started = datetime.now(timezone.utc)
    run = start_deployment_run("pausable-study/digits-demo", {
        "study_name": name, "storage": storage, "checkpoints": str(checkpoints),
        "n_trials": N_TRIALS, "max_epochs": MAX_EPOCHS, "max_concurrent_trials": 1, "seed": 5,
        "pause_policy": policy_waiting_for_resume(),  # it is resumed below, at a time of the test's
    })

    # Paused from the UI once a trial has trained two epochs.
    wait_until_mid_training(storage, name, min_epochs=2)
    ui_pause(run.id)

    def suspended_by_study():
        r = read_run(run.id)
        key = (r.state.state_details.pause_key or "") if r.state else ""
        return r if r.state.name == "Suspended" and key.startswith(FLOW_PAUSE_KEY_PREFIX) else None

    suspended = wait_for(suspended_by_study, timeout=180, what="the study to suspend its run")
    wait_for(lambda: process_is_gone(suspended), timeout=60, what="the flow's process to exit")
    paused = _snapshot(name, ctx)
    paused_table = intermission("status", name, env=stack.env)
    assert paused_table.returncode == 0, paused_table.stderr

    # Resumed for later: the run is scheduled, a worker starts it at that time.
    resume_at = (datetime.now(timezone.utc) + timedelta(seconds=RESUME_DELAY_SECONDS)).replace(microsecond=0)
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(run.id, Scheduled(scheduled_time=resume_at, name="Resuming"))
    scheduled = _snapshot(str(run.id), ctx)

    # Running again: the resumed trial trains on.
    wait_for_state(run.id, "Running", "Completed", timeout=300)

    def training_again():
        trials = optuna.load_study(study_name=name, storage=storage).get_trials()
        return any(t.system_attrs.get(TRIAL_STATUS_ATTR) == "running" for t in trials
                   if t.state == TrialState.RUNNING)

    wait_for(training_again, timeout=120, what="the resumed run to train a trial")
    running = _snapshot(name, ctx)

    wait_for_state(run.id, "Completed", timeout=600)
    completed = _snapshot(name, ctx)
    table = intermission("status", name, env=stack.env)
    assert table.returncode == 0, table.stderr
    ARTIFACTS.mkdir(exist_ok=True)  # kept for the run: what a user saw in the terminal
    (ARTIFACTS / f"status-{name}-paused.txt").write_text(paused_table.stdout)
    (ARTIFACTS / f"status-{name}-completed.txt").write_text(table.stdout)
    return DrivenStudy(
        name=name, storage=storage, checkpoints=checkpoints, flow_run_id=str(run.id),
        env=stack.env, started=started, running=running, paused=paused, scheduled=scheduled,
        resume_at=resume_at, completed=completed, table=table.stdout,
        paused_table=paused_table.stdout,
    )


def parse_time(value: str) -> datetime:
    """An ISO 8601 time from the status output."""
    return datetime.fromisoformat(value)

