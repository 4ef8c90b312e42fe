"""Fault injection: SIGKILL a running study again and again, at named points and at random
moments, and continue it each time. Every study must end complete with exactly `n_trials`
finished trials, none duplicated, at most one epoch lost per kill, and no damaged checkpoint
ever visible or loaded.

`INTERMISSION_FAULT_SEED` replays a run; `INTERMISSION_FAULT_KILLS` sets how many kills (>= 30).
"""

from __future__ import annotations

import io
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState

from deployments.local_stack import PROJECT_ROOT
from prefect_intermission._faults import FAULT_POINTS
from prefect_intermission.training.store import CheckpointStore
from prefect_intermission.study.state import TRIAL_RESUMPTIONS_ATTR

SCRIPT = Path(__file__).with_name("run_study_script.py")
N_TRIALS = 4
POINTS = [p for p in FAULT_POINTS if p != "flow.suspend"]  # a plain script never suspends


def _final_name_files_load(checkpoints: Path) -> int:
    """Check every checkpoint under its final name loads safely; return how many there are."""
    files = sorted(checkpoints.rglob("epoch-*.pt"))
    for path in files:
        torch.load(io.BytesIO(path.read_bytes()), weights_only=True)  # raises if damaged
    return len(files)


def _check_finished_study(storage: str, name: str, checkpoints: Path, kills: int) -> None:
    study = optuna.load_study(study_name=name, storage=storage)
    assert [t.number for t in study.trials] == list(range(N_TRIALS)), "no trial lost or duplicated"
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.trials)
    records = [r for t in study.trials for r in t.system_attrs.get(TRIAL_RESUMPTIONS_ATTR, [])]
    assert len([r for r in records if r["reason"] == "crash"]) <= kills
    assert sum(len(r["lost_epochs"]) for r in records) <= kills, "more than one epoch lost per kill"
    for record in records:
        assert len(record["lost_epochs"]) <= 1, record
        assert record["fallbacks"] == [], f"a damaged checkpoint was met: {record}"
    for trial in study.trials:
        if trial.state == TrialState.COMPLETE:
            loaded = CheckpointStore(str(checkpoints)).for_trial(name, trial.number).load_latest_valid()
            assert loaded.epoch == max(trial.intermediate_values) and not loaded.fallbacks


def test_studies_survive_repeated_sigkills(prefect_stack, tmp_path):
    seed = int(os.environ.get("INTERMISSION_FAULT_SEED", time.time_ns() % 1_000_000))
    wanted = max(30, int(os.environ.get("INTERMISSION_FAULT_KILLS", "30")))
    print(f"fault-injection seed: {seed} (replay with INTERMISSION_FAULT_SEED={seed})")
    rng = random.Random(seed)
    storage = f"sqlite:///{tmp_path}/studies.db"
    checkpoints = tmp_path / "checkpoints"
    base_env = {
        **prefect_stack.env,
        "INTERMISSION_LEASE_SECONDS": "1",
        "INTERMISSION_TEST_EPOCH_SECONDS": "0.1",
    }
    study_index, kills_in_study, kills, log = 0, 0, 0, []

    while True:
        name = f"faults-{seed}-{study_index}"
        command = [sys.executable, str(SCRIPT), name, storage, str(checkpoints),
                   "--n-trials", "4", "--max-epochs", "5", "--seed", "3"]
        env = dict(base_env)
        finishing = kills >= wanted
        if finishing:
            how = "no fault"
        elif rng.random() < 0.7:
            point, count = rng.choice(POINTS), rng.randint(1, 4)
            env["INTERMISSION_FAULT"] = f"{point}:{count}"
            how = f"at {point} #{count}"
        else:
            how = f"after {rng.uniform(3.5, 6.5):.1f} s"
        process = subprocess.Popen(command, env=env, cwd=PROJECT_ROOT,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if how.startswith("after"):
            try:
                process.wait(timeout=float(how.split()[1]))
            except subprocess.TimeoutExpired:
                process.send_signal(signal.SIGKILL)
        _, stderr = process.communicate(timeout=180)
        killed = process.returncode == -signal.SIGKILL
        log.append(f"{name}: {how} -> {'killed' if killed else process.returncode}")
        assert killed or process.returncode == 0, f"{log[-1]}\n{stderr[-3000:]}"
        assert _final_name_files_load(checkpoints) >= 0  # no damaged file under a final name
        if killed:
            kills += 1
            kills_in_study += 1
            continue
        _check_finished_study(storage, name, checkpoints, kills_in_study)
        if finishing:
            break
        study_index, kills_in_study = study_index + 1, 0

    print("\n".join(log))
    assert kills >= 30


@pytest.mark.parametrize(
    ("point", "last_stored"),
    [("writer.before_write", 1), ("writer.before_manifest", 1), ("writer.after_manifest", 2)],
)
def test_a_kill_in_the_background_writer_leaves_the_previous_checkpoint(prefect_stack, tmp_path, point, last_stored):
    """Killed while the writer thread stores epoch 2 of trial 0 (the third checkpoint), the
    study keeps a valid checkpoint of the epoch before it (of epoch 2 itself once it is
    listed) and, continued, completes having trained again no more than that epoch."""
    storage = f"sqlite:///{tmp_path}/studies.db"
    checkpoints = tmp_path / "checkpoints"
    command = [sys.executable, str(SCRIPT), "writer", storage, str(checkpoints),
               "--n-trials", "2", "--max-epochs", "4", "--seed", "3"]
    env = {**prefect_stack.env, "INTERMISSION_LEASE_SECONDS": "1", "INTERMISSION_TEST_EPOCH_SECONDS": "0.1"}
    killed = subprocess.run(command, env={**env, "INTERMISSION_FAULT": f"{point}:3"}, cwd=PROJECT_ROOT,
                            capture_output=True, text=True, timeout=180)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert _final_name_files_load(checkpoints) >= last_stored
    loaded = CheckpointStore(str(checkpoints)).for_trial("writer", 0).load_latest_valid()
    assert (loaded.epoch, loaded.fallbacks) == (last_stored, [])
    study = optuna.load_study(study_name="writer", storage=storage)
    assert max(study.trials[0].intermediate_values) == 2  # epoch 2 was reported before its write

    continued = subprocess.run(command, env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=180)
    assert continued.returncode == 0, continued.stderr[-3000:]
    study = optuna.load_study(study_name="writer", storage=storage)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
    [record] = study.trials[0].system_attrs[TRIAL_RESUMPTIONS_ATTR]
    assert record["from_epoch"] == last_stored and record["fallbacks"] == []
    assert record["lost_epochs"] == ([] if last_stored == 2 else [2])
