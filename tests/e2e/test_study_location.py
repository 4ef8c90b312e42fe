"""A deployment run paused on one machine and resumed on another: with the default relative
locations the second stops before any training and leaves the study as it was; with shared
locations it continues the study exactly.

No docker or kubernetes worker can start here, so the deployment is on a `docker` work
pool that no worker serves, and each execution is started the way such a worker's
container starts it, `prefect flow-run execute <id>`. The deployment's pull step moves
into the machine's working directory (`MACHINE_DIRECTORY`, as a container image's
working directory): `machine-a` first, `machine-b` after the resume.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect_intermission.control.run_control import request_pause
from prefect_intermission.study.flow_runs import STUDY_FLOW_NAME

from deployments.local_stack import PROJECT_ROOT, LocalPrefect
from deployments.ui_actions import (
    read_run,
    start_deployment_run,
    ui_resume,
    wait_for,
    wait_until_mid_training,
)
from tests.e2e.studies import run_logs, trained_epochs

N_TRIALS = 2
MAX_EPOCHS = 4
POOL_WARNING = "is a 'docker' pool, so a resumed run may start in a new container"


def _deployment_on_a_docker_pool() -> str:
    """A deployment of the study flow whose work pool is of type `docker`; its name."""
    tag = uuid.uuid4().hex[:6]
    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name=f"containers-{tag}", type="docker"))
        client.create_deployment(
            flow_id=client.create_flow_from_name(STUDY_FLOW_NAME), name=f"in-containers-{tag}",
            entrypoint="prefect_intermission.flows.study.optimize_study", work_pool_name=f"containers-{tag}",
            pull_steps=[{"prefect.deployments.steps.set_working_directory": {"directory": "{{ $MACHINE_DIRECTORY }}"}}],
        )
    return f"{STUDY_FLOW_NAME}/in-containers-{tag}"


class Machines:
    """Executions of one flow run, each in the working directory of a 'machine'."""

    def __init__(self, stack: LocalPrefect, root: Path) -> None:
        self.root = root
        paths = [str(PROJECT_ROOT / "plugins"), str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")]
        # The objective (tests.e2e.studies) is importable from any directory, as if installed.
        self.env = {**stack.env, "PYTHONPATH": os.pathsep.join(paths), "INTERMISSION_TEST_EPOCH_SECONDS": "1"}

    def directory(self, machine: str) -> Path:
        path = self.root / machine
        path.mkdir(exist_ok=True)
        return path

    def start(self, flow_run_id: Any, machine: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "prefect", "flow-run", "execute", str(flow_run_id)],
            cwd=self.root, env={**self.env, "MACHINE_DIRECTORY": str(self.directory(machine))}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )

    def run_paused_on_a(self, flow_run_id: Any, storage: str, study_name: str) -> None:
        """Execute the run on machine A, pause it mid-training, and resume it (a run due again)."""
        first = self.start(flow_run_id, "machine-a")
        try:
            database = Path(storage.removeprefix("sqlite:///"))
            wait_for(database.exists, timeout=120, what=f"{database} to be created")
            wait_until_mid_training(storage, study_name, min_epochs=1, timeout=180)
            request_pause(flow_run_id)
            output, _ = first.communicate(timeout=180)
        except BaseException as e:
            first.kill()
            raise AssertionError(f"the execution on machine A: {first.communicate()[0]}") from e
        assert first.returncode == 0, output
        assert read_run(flow_run_id).state.name == "Suspended", output
        ui_resume(flow_run_id)


def _stored(storage: str, study_name: str) -> list[tuple]:
    study = optuna.load_study(study_name=study_name, storage=storage)
    return [
        (study._storage.get_study_system_attrs(study._study_id),),
        *((t.number, t.state, t.params, t.intermediate_values, t.system_attrs) for t in study.trials),
    ]


def _files(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()}


def _parameters(study_name: str, **locations: str) -> dict[str, Any]:
    return {
        "study_name": study_name, "objective": "tests.e2e.studies:countdown", "n_trials": N_TRIALS,
        "max_epochs": MAX_EPOCHS, "seed": 5, "pruner": "none", **locations,
    }


def test_resumed_elsewhere_relative_locations_stop_and_shared_ones_continue(prefect_stack, tmp_path):
    deployment = _deployment_on_a_docker_pool()
    machines = Machines(prefect_stack, tmp_path)

    # Default, relative locations: machine B does not find the study that machine A ran.
    local = f"local-{uuid.uuid4().hex[:6]}"
    run = start_deployment_run(deployment, _parameters(local))
    a_storage = f"sqlite:///{machines.directory('machine-a')}/.intermission/studies.db"
    machines.run_paused_on_a(run.id, a_storage, local)
    assert POOL_WARNING in run_logs(run.id)
    before, a_files = _stored(a_storage, local), _files(machines.directory("machine-a") / ".intermission")
    trained_on_a = trained_epochs(run.id)

    second = machines.start(run.id, "machine-b")
    output, _ = second.communicate(timeout=180)
    state = read_run(run.id).state
    assert state.name == "Failed", output
    a, b = machines.directory("machine-a"), machines.directory("machine-b")
    assert (
        f"cannot continue study '{local}' here: its locations resolve to other places than at its first "
        f"execution. Its first execution ran the study with storage sqlite:///{a}/.intermission/studies.db "
        f"and checkpoints {a}/.intermission/checkpoints; this execution, in the working directory {b}, would "
        f"use storage sqlite:///{b}/.intermission/studies.db and checkpoints {b}/.intermission/checkpoints. "
        "Nothing was created or changed."
    ) in state.message
    assert (
        f"start a new run of it with storage='sqlite:///{a}/.intermission/studies.db' and "
        f"checkpoints='{a}/.intermission/checkpoints' where those are reachable"
    ) in state.message
    assert trained_epochs(run.id) == trained_on_a, "nothing trained on machine B"
    assert list(b.iterdir()) == [], "nothing was created on machine B"
    assert _stored(a_storage, local) == before
    assert _files(a / ".intermission") == a_files

    # Shared locations (absolute paths on a volume both machines mount): it continues exactly.
    shared_name = f"shared-{uuid.uuid4().hex[:6]}"
    shared = tmp_path / "shared-volume"
    storage = f"sqlite:///{shared}/studies.db"
    run = start_deployment_run(deployment, _parameters(shared_name, storage=storage, checkpoints=str(shared / "checkpoints")))
    machines.run_paused_on_a(run.id, storage, shared_name)
    paused = [t for t in optuna.load_study(study_name=shared_name, storage=storage).trials if t.state == TrialState.RUNNING]
    assert paused, "a trial was paused mid-training"

    second = machines.start(run.id, "machine-b")
    output, _ = second.communicate(timeout=300)
    assert second.returncode == 0, output
    assert read_run(run.id).state.name == "Completed"
    trials = optuna.load_study(study_name=shared_name, storage=storage).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * N_TRIALS
    trained = trained_epochs(run.id, at_least=N_TRIALS * MAX_EPOCHS)
    assert trained == {(n, e): 1 for n in range(N_TRIALS) for e in range(MAX_EPOCHS)}, "every epoch trained once"
    assert POOL_WARNING not in run_logs(run.id)
    assert list(machines.directory("machine-b").iterdir()) == []
