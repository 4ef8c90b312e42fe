"""Real backing services on loopback for the tests and benchmarks: an S3-protocol server
(moto) and a PostgreSQL server in a temporary folder.

Both are started the way their own projects' test suites start them and stopped
with everything they wrote; neither needs anything outside this machine.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

import httpx

from deployments.local_stack import free_port

#: Credentials moto accepts (it checks none); real values never appear in tests.
S3_TEST_KEY = "intermission-test-key"
S3_TEST_SECRET = "intermission-test-secret"


class LocalS3:
    """moto's S3 server on 127.0.0.1.

    `threaded=True` runs moto's `ThreadedMotoServer` in this process, as s3fs's own
    tests do; `threaded=False` runs `python -m moto.server` in a subprocess, so that
    its work does not share this process's GIL (used by the benchmarks).
    """

    def __init__(self, *, threaded: bool = True) -> None:
        self.threaded = threaded
        self.port = free_port()
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self._server: object | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def env(self) -> dict[str, str]:
        """The AWS environment variables that point an S3 client at this server."""
        return {
            "AWS_ACCESS_KEY_ID": S3_TEST_KEY,
            "AWS_SECRET_ACCESS_KEY": S3_TEST_SECRET,
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    @property
    def storage_options(self) -> dict[str, str]:
        """The s3fs options that point at this server."""
        return {"key": S3_TEST_KEY, "secret": S3_TEST_SECRET, "endpoint_url": self.endpoint_url}

    def __enter__(self) -> LocalS3:
        if self.threaded:
            from moto.server import ThreadedMotoServer

            server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
            server.start()
            self._server = server
        else:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
        self._wait_ready()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._server is not None:
            self._server.stop()  # type: ignore[attr-defined]
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=20)

    def create_bucket(self, name: str) -> None:
        """Create a bucket (anonymous PUT: moto checks no credentials)."""
        httpx.put(f"{self.endpoint_url}/{name}", timeout=10).raise_for_status()

    def _wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise RuntimeError("moto's S3 server exited at start")
            try:
                httpx.get(f"{self.endpoint_url}/moto-api/", timeout=1)
                return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise TimeoutError(f"moto's S3 server did not answer within {timeout} s")


def postgres_bin_dir() -> Path | None:
    """The folder of PostgreSQL's `initdb` and `pg_ctl`: on PATH, or Debian's versioned folder."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).resolve().parent
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3])
    )
    return Path(candidates[-1]).parent if candidates else None


class LocalPostgres:
    """A PostgreSQL server of its own on 127.0.0.1, its data in a temporary folder.

    PostgreSQL refuses to run as root; as root the server runs as the `postgres`
    user (Debian's package creates it), or `nobody` where there is none. Connections
    are trusted from loopback only, as user `postgres`.
    """

    def __init__(self, *, database: str = "studies") -> None:
        bin_dir = postgres_bin_dir()
        if bin_dir is None:
            raise RuntimeError(
                "PostgreSQL's initdb/pg_ctl were not found; install Debian's `postgresql` "
                "package (.ci/run does) or put them on PATH."
            )
        self.bin_dir = bin_dir
        self.database = database
        self.port = free_port()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"
        self._dir: Path | None = None
        self._run_as: str | None = None

    def __enter__(self) -> LocalPostgres:
        self._dir = Path(tempfile.mkdtemp(prefix="intermission-pg-"))
        data = self._dir / "data"
        if os.geteuid() == 0:
            self._run_as = _unprivileged_user()
            user = pwd.getpwnam(self._run_as)
            os.chown(self._dir, user.pw_uid, user.pw_gid)
        self._run("initdb", "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync")
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self._dir} "
            "-c fsync=off -c max_connections=200"
        )
        try:
            self._run("pg_ctl", "-D", str(data), "-l", str(self._dir / "server.log"), "-o", options, "-w", "start")
            self._psql_create_database()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._dir is None:
            return
        data = self._dir / "data"
        if (data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(data), "-m", "fast", "-w", "stop", check=False)
        shutil.rmtree(self._dir, ignore_errors=True)
        self._dir = None

    def log(self) -> str:
        """The server's log so far."""
        path = self._dir / "server.log" if self._dir else None
        return path.read_text(errors="replace") if path and path.exists() else ""

    def _psql_create_database(self) -> None:
        import psycopg

        with psycopg.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(f'CREATE DATABASE "{self.database}"')

    def _run(self, program: str, *args: str, check: bool = True) -> None:
        command = [str(self.bin_dir / program), *args]
        if self._run_as is not None:
            command = ["runuser", "-u", self._run_as, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=self._dir)
        if check and done.returncode != 0:
            raise RuntimeError(
                f"{program} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}\n{self.log()}"
            )


def _unprivileged_user() -> str:
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise RuntimeError("PostgreSQL cannot run as root and there is no `postgres` or `nobody` user.")
