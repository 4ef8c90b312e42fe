"""The README's Quickstart, as a new user follows it with nothing but the package installed.

The wheel is built from this checkout and installed, as the README's Install section says
(PyTorch first, then Prefect, then the package), into a virtualenv outside the checkout;
the quickstart's commands are read from the README and run as written, in a folder outside
the checkout whose only file is the README's `my_objective.py`, against a real
`prefect server start` and process worker: deploy, run, the UI's Pause, resume, Completed,
the best model written. Then `intermission init`'s prefect.yaml, with `prefect deploy --all`.

What differs from a user's terminal, all visible here: the server listens on a free port
instead of 4200, the worker polls every second instead of every ten, and the pause is the
UI's (the Suspended state its Pause button sets) rather than its terminal equivalent
`intermission pause`, which other end-to-end tests run.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from uuid import UUID

import httpx
import optuna
import pytest
import torch
from optuna.trial import TrialState
from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.utilities.importtools import import_object

from deployments.local_stack import PROJECT_ROOT, free_port, stop_processes
from deployments.ui_actions import (
    UI_PAUSE_TIMEOUT_SECONDS,
    process_is_gone,
    read_run,
    ui_pause,
    wait_for,
    wait_for_state,
    wait_until_mid_training,
    wait_until_suspended_by_study,
)
from prefect_intermission.deploy.catalog import DEPLOYMENTS
from tests.e2e.studies import trained_epochs

# One worker builds the virtualenv once for the module's tests.
pytestmark = pytest.mark.xdist_group("quickstart")

README = (PROJECT_ROOT / "README.md").read_text()
TORCH = "torch==2.13.0"  # the CPU build on this machine's disk (a bare `torch` would be a CUDA build)
# What each quickstart command is, in the README's order (each starts with its key).
STEPS = [
    "prefect server start",
    "prefect config set PREFECT_API_URL=",
    "prefect work-pool create",
    "intermission deploy",
    "prefect worker start",
    "prefect deployment run",
    "intermission pause",
    "intermission resume",
    "intermission best",
]


def readme_block(marker: str, language: str) -> str:
    match = re.search(rf"<!-- {re.escape(marker)} -->\n```{language}\n(.*?)```", README, re.S)
    assert match, f"README has no {language} block after <!-- {marker} -->"
    return match.group(1)


def quickstart_commands() -> list[str]:
    lines = readme_block("quickstart: commands", "bash").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def test_the_quickstart_block_has_every_step_in_order():
    commands = quickstart_commands()
    assert len(commands) == len(STEPS)
    for command, step in zip(commands, STEPS):
        assert command.startswith(step), (command, step)


@dataclass
class UserEnv:
    """A virtualenv outside the checkout with the built wheel installed."""

    venv: Path
    wheel: Path
    env: dict[str, str]

    def run(self, *args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(args, cwd=cwd, env=self.env, capture_output=True, text=True, timeout=timeout)

    def pip(self, *args: str, cwd: Path) -> str:
        done = self.run(str(self.venv / "bin" / "python"), "-m", "pip", *args, cwd=cwd)
        assert done.returncode == 0, f"pip {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def version_of(self, distribution: str, cwd: Path) -> str:
        code = f"from importlib.metadata import version; print(version({distribution!r}))"
        done = self.run(str(self.venv / "bin" / "python"), "-c", code, cwd=cwd)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()


def user_environment(root: Path) -> dict[str, str]:
    """A shell's environment with the venv first on PATH, none of this checkout's, and pip's settings."""
    keep = {k: v for k, v in os.environ.items() if k.startswith("PIP_") or k in ("HOME", "LANG", "LC_ALL", "TMPDIR")}
    return {
        **keep,
        "PATH": f"{root / 'venv' / 'bin'}{os.pathsep}/usr/local/bin{os.pathsep}/usr/bin{os.pathsep}/bin",
        "PREFECT_HOME": str(root / "prefect-home"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_WORKER_QUERY_SECONDS": "1",  # the worker picks a run up within a second, not ten
        "PYTHONUNBUFFERED": "1",
    }


@pytest.fixture(scope="module")
def user(tmp_path_factory: pytest.TempPathFactory) -> UserEnv:
    """Build the wheel; install torch, then Prefect, then the wheel into a fresh virtualenv."""
    root = tmp_path_factory.mktemp("user")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", str(PROJECT_ROOT), "-w", str(root / "dist")],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    (wheel,) = (root / "dist").glob("prefect_intermission-*.whl")
    subprocess.run([sys.executable, "-m", "venv", str(root / "venv")], check=True, timeout=120)
    user = UserEnv(root / "venv", wheel, user_environment(root))
    user.pip("install", "--quiet", TORCH, cwd=root)
    # The Prefect these tests run on, installed first, with the FastAPI its server runs on here:
    # Prefect before 3.9 does not cap FastAPI, and its server fails with FastAPI 0.165 and later.
    user.pip("install", "--quiet", f"prefect=={version('prefect')}", f"fastapi=={version('fastapi')}", cwd=root)
    user.pip("install", "--quiet", str(wheel), cwd=root)
    return user


def test_installing_the_wheel_keeps_prefect_and_torch_and_pip_check_is_clean(user, tmp_path):
    assert user.version_of("prefect", tmp_path) == version("prefect")
    assert user.version_of("torch", tmp_path).split("+")[0] == TORCH.split("==")[1]  # e.g. 2.13.0+cpu
    assert "No broken requirements found" in user.pip("check", cwd=tmp_path)


def test_the_installed_package_is_the_wheels_alone(user, tmp_path):
    wheel_version = user.wheel.name.split("-")[1]
    done = user.run("intermission", "--version", cwd=tmp_path)
    assert (done.returncode, done.stdout) == (0, f"intermission {wheel_version}\n"), done.stderr
    code = (
        "import importlib.util, pathlib, prefect_intermission as p; "
        "print(p.__file__); print(p.__version__); "
        "print(pathlib.Path(p.__file__).with_name('py.typed').is_file()); "
        "print([m for m in ('flows', 'deployments', 'tests') if importlib.util.find_spec(m)])"
    )
    done = user.run(str(user.venv / "bin" / "python"), "-c", code, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    path, package_version, typed, repository_modules = done.stdout.splitlines()
    assert Path(path).is_relative_to(user.venv / "lib")
    assert package_version == wheel_version
    assert typed == "True"
    assert repository_modules == "[]"


@pytest.fixture
def background(user) -> Iterator[list[subprocess.Popen[bytes]]]:
    """The quickstart's long-running commands (server, worker), stopped at the end."""
    processes: list[subprocess.Popen[bytes]] = []
    yield processes
    stop_processes(list(reversed(processes)))


def test_the_readme_quickstart_from_deploy_to_the_best_model(user, background, tmp_path):
    project = tmp_path / "my-project"
    project.mkdir()
    storage = f"sqlite:///{project}/.intermission/studies.db"  # the study's default, in its folder
    (project / "my_objective.py").write_text(readme_block("readme-example: quickstart/my_objective.py", "python"))
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    logs = tmp_path / "logs"
    logs.mkdir()
    flow_run_id: UUID | None = None

    def run(command: str) -> str:
        done = user.run(*shlex.split(command), cwd=project, timeout=300)
        assert done.returncode == 0, f"{command}:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def start(command: str, log: str) -> None:
        with open(logs / log, "wb") as out:
            background.append(subprocess.Popen(
                shlex.split(command), cwd=project, env=user.env, stdout=out, stderr=subprocess.STDOUT
            ))

    for command in quickstart_commands():
        command = command.replace("127.0.0.1:4200", f"127.0.0.1:{port}")
        if command.startswith("prefect server start"):
            start(f"{command} --host 127.0.0.1 --port {port}", "server.log")

            def healthy() -> bool:
                try:
                    return httpx.get(f"{api_url}/health", timeout=2).status_code == 200
                except httpx.HTTPError:
                    return False

            wait_for(healthy, timeout=120, what=f"the server to answer (log: {logs / 'server.log'})")
        elif command.startswith("prefect worker start"):
            start(command, "worker.log")
        elif command.startswith("prefect deployment run"):
            output = run(command)
            flow_run_id = UUID(re.search(r"UUID: ([0-9a-f-]{36})", output).group(1))
        elif command.startswith("intermission pause"):
            # The UI's Pause, on the running run, instead of its terminal equivalent.
            assert flow_run_id is not None
            with temporary_settings({PREFECT_API_URL: api_url}):
                wait_for_state(flow_run_id, "Running", timeout=180)
                wait_until_mid_training(storage, "my-search", min_epochs=1, timeout=180)
                ui_pause(flow_run_id)  # with the dialog's default timeout (300 s)
                paused_at = time.monotonic()
                # The study stops its trials at their next epoch boundary, then its process exits.
                suspended = wait_until_suspended_by_study(flow_run_id)
                wait_for(lambda: process_is_gone(suspended), timeout=60, what="the flow's process to exit")
                assert read_run(flow_run_id).state.name == "Suspended"
        elif command.startswith("intermission best"):
            # Completed well before the pause dialog's timeout: `intermission resume` resumed it.
            with temporary_settings({PREFECT_API_URL: api_url}):
                wait_for_state(flow_run_id, "Completed", timeout=UI_PAUSE_TIMEOUT_SECONDS - 60)
            assert time.monotonic() - paused_at < UI_PAUSE_TIMEOUT_SECONDS
            assert "written to" in run(command)
        else:
            run(command.replace("<flow-run-id>", str(flow_run_id)))

    # The study finished both trials, and no epoch was trained twice across the pause.
    study = optuna.load_study(study_name="my-search", storage=storage)
    assert len(study.trials) == 2
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.trials)
    epochs = sum(len(t.intermediate_values) for t in study.trials)
    with temporary_settings({PREFECT_API_URL: api_url}):
        counts = trained_epochs(flow_run_id, at_least=epochs)
    assert sum(counts.values()) == epochs and set(counts.values()) == {1}, counts

    # model.pt holds the best trial's weights: its shapes are the best trial's `hidden`.
    weights = torch.load(project / "model.pt", weights_only=True)
    assert set(weights) == {"0.weight", "0.bias", "2.weight", "2.bias"}
    assert weights["0.weight"].shape == (study.best_trial.params["hidden"], 16)

    # The other way in: `intermission init`'s prefect.yaml, registered by `prefect deploy --all`,
    # gives the same deployments, their runs starting in that folder.
    other = tmp_path / "with-prefect-yaml"
    other.mkdir()
    done = user.run("intermission", "init", "--pool", "my-pool", cwd=other)
    assert done.returncode == 0, done.stderr
    done = user.run("prefect", "--no-prompt", "deploy", "--all", cwd=other, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        for spec in DEPLOYMENTS:
            deployment = client.read_deployment_by_name(f"{import_object(spec.entrypoint).name}/{spec.name}")
            assert deployment.entrypoint == spec.entrypoint
            assert deployment.pull_steps == [
                {"prefect.deployments.steps.set_working_directory": {"directory": str(other)}}
            ]
