"""A local Prefect stack started the way users start it: `prefect server start` and a process worker.

Used by `make demo` and by the end-to-end tests.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import IO

import httpx

PROJECT_ROOT = Path(__file__).resolve().parent.parent
WORK_POOL = "intermission-local"


def free_port() -> int:
    """A TCP port on loopback that nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalPrefect:
    """A `prefect server start` on loopback with its own PREFECT_HOME (SQLite), plus workers."""

    def __init__(
        self,
        home: Path,
        *,
        port: int | None = None,
        worker_poll_seconds: float = 2,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.home = home
        self.port = port or free_port()
        self.api_url = f"http://127.0.0.1:{self.port}/api"
        self.env = {
            **os.environ,
            "PREFECT_HOME": str(home),
            "PREFECT_API_URL": self.api_url,
            "PREFECT_UI_URL": f"http://127.0.0.1:{self.port}",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            # Each server copies the UI into a folder of its own: by default the first start of a
            # new virtualenv copies it into site-packages, and two servers starting at once there
            # (two test processes) fail ("Directory not empty: 'assets'").
            "PREFECT_UI_STATIC_DIRECTORY": str(home / "ui"),
            "PREFECT_WORKER_QUERY_SECONDS": str(worker_poll_seconds),
            "PREFECT_WORKER_PREFETCH_SECONDS": "2",
            "PREFECT_LOGGING_LEVEL": os.environ.get("PREFECT_LOGGING_LEVEL", "INFO"),
            "PYTHONUNBUFFERED": "1",
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            **(extra_env or {}),
        }
        self._server: subprocess.Popen[bytes] | None = None
        self._workers: list[subprocess.Popen[bytes]] = []
        self._logs: list[IO[bytes]] = []

    # -- lifecycle -------------------------------------------------------------
    def __enter__(self) -> LocalPrefect:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self, timeout: float = 90) -> None:
        """Start the server and wait until it answers `/api/health`."""
        self.home.mkdir(parents=True, exist_ok=True)
        self._server = self._spawn(self.server_command(), "server.log", module=None)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._server.poll() is not None:
                raise RuntimeError(f"prefect server exited; see {self.home / 'server.log'}")
            try:
                if httpx.get(f"{self.api_url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"prefect server did not answer within {timeout} s")

    def server_command(self) -> list[str]:
        """The Python module and arguments that start the server (`python -m ...`)."""
        return ["prefect", "server", "start", "--host", "127.0.0.1", "--port", str(self.port)]

    def stop(self) -> None:
        """Stop the workers, then the server."""
        stop_processes([p for p in [*self._workers, self._server] if p is not None])
        for log in self._logs:
            log.close()

    # -- commands --------------------------------------------------------------
    def prefect(self, *args: str) -> str:
        """Run a `prefect` CLI command against this server from the project root."""
        done = subprocess.run(
            [sys.executable, "-m", "prefect", *args],
            env=self.env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300,
        )
        if done.returncode != 0:
            raise RuntimeError(f"prefect {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
        return done.stdout

    def create_work_pool(self) -> None:
        """Create the project's work pool (deployments/work_pool.sh), if it is not there yet."""
        subprocess.run(
            ["bash", "deployments/work_pool.sh", WORK_POOL],
            env=self.env, cwd=PROJECT_ROOT, check=True, capture_output=True,
        )

    def deploy(self, *names: str) -> None:
        """Create the work pool and apply the named deployments of prefect.yaml."""
        self.create_work_pool()
        args = [arg for name in names for arg in ("--name", name)]
        self.prefect("--no-prompt", "deploy", *args)

    def start_worker(
        self,
        name: str = "worker",
        *,
        work_queues: tuple[str, ...] = (),
        limit: int | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start a process worker on the project's work pool: on every queue of the pool, or
        only on `work_queues`, running at most `limit` flow runs at once; its flow runs'
        processes inherit `env` on top of the stack's environment."""
        args = ["worker", "start", "--pool", WORK_POOL, "--name", name, "--type", "process"]
        args += [arg for queue in work_queues for arg in ("--work-queue", queue)]
        if limit is not None:
            args += ["--limit", str(limit)]
        worker = self._spawn(args, f"{name}.log", env=env)
        self._workers.append(worker)
        return worker

    def log(self, name: str) -> str:
        """The output of the server (`server`) or of a worker, so far."""
        path = self.home / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _spawn(
        self, args: list[str], log_name: str, env: dict[str, str] | None = None, *, module: str | None = "prefect"
    ) -> subprocess.Popen[bytes]:
        log = open(self.home / log_name, "ab")
        self._logs.append(log)
        return subprocess.Popen(
            [sys.executable, "-m", *([module] if module else []), *args],
            env={**self.env, **(env or {})}, cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT,
        )


def stop_processes(processes: list[subprocess.Popen[bytes]], timeout: float = 20) -> None:
    """Ask each process to end (SIGTERM), then kill any still running `timeout` seconds later."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
