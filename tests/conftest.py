"""The test tiers, marked by folder, and the fixtures they share.

- `tests/unit`: no server and no worker: the code on its own; each test has a short timeout.
- `tests/integration`: one `prefect server start` per test process (`prefect_server`), flows run
  in the test's own process; no worker. With `tests/unit`, this is `make check`.
- `tests/e2e`: the real stack (`prefect_stack`): the same server, the deployments and a process
  worker, driven as users drive it. `make test` runs all three.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect.logging.handlers import APILogWorker
from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL, temporary_settings

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from deployments.local_services import LocalPostgres, LocalS3  # noqa: E402
from deployments.local_stack import LocalPrefect  # noqa: E402


TESTS = Path(__file__).resolve().parent
TIERS = ("unit", "integration", "e2e")
#: A unit test that takes longer than this is waiting for something it should not need.
UNIT_TIMEOUT_SECONDS = 60


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test with its tier, the folder it is in; give unit tests their short timeout."""
    for item in items:
        tier = item.path.resolve().relative_to(TESTS).parts[0]
        if tier not in TIERS:
            raise pytest.UsageError(f"{item.nodeid}: every test lives in one of tests/{{{','.join(TIERS)}}}.")
        item.add_marker(getattr(pytest.mark, tier))
        if tier == "unit" and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(UNIT_TIMEOUT_SECONDS))


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPrefect]:
    """`prefect server start` on loopback (its own PREFECT_HOME, SQLite), the API of this
    process's flows; one per test process.

    The pause-expiration service runs every second, so a UI pause's timeout can be
    shortened to seconds; trials look for pauses five times a second.
    """
    home = tmp_path_factory.mktemp("prefect-home")
    stack = LocalPrefect(
        home,
        worker_poll_seconds=1,
        extra_env={
            "PREFECT_SERVER_SERVICES_PAUSE_EXPIRATIONS_LOOP_SECONDS": "1",
            "INTERMISSION_PAUSE_POLL_SECONDS": "0.2",
        },
    )
    with stack, temporary_settings(
        {PREFECT_API_URL: stack.api_url, PREFECT_UI_URL: stack.env["PREFECT_UI_URL"]}
    ):
        yield stack
        APILogWorker.drain_all(timeout=5)  # send this process's run logs before the server stops


@pytest.fixture(scope="session")
def prefect_stack(prefect_server: LocalPrefect) -> LocalPrefect:
    """The test process's server with the project's deployments and one process worker.

    The worker serves the pool's `default` queue (every deployment but `train-trial`);
    trial runs wait in the `trials` queue for the workers a test starts for them.
    """
    prefect_server.deploy(
        "digits-demo", "text-classification-demo", "pause-study", "resume-study", "resume-paused-studies-at-night",
        "train-trial",
    )
    prefect_server.start_worker(work_queues=("default",))
    return prefect_server


@pytest.fixture(scope="session")
def s3_server() -> Iterator[LocalS3]:
    """moto's S3 server on 127.0.0.1 (a `ThreadedMotoServer`, as s3fs's tests use)."""
    with LocalS3(threaded=True) as server:
        yield server


@pytest.fixture
def s3_bucket(s3_server: LocalS3) -> str:
    """A new, empty bucket on the S3 server; its name."""
    name = f"checkpoints-{uuid.uuid4().hex[:12]}"
    s3_server.create_bucket(name)
    return name


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[LocalPostgres]:
    """A PostgreSQL server of its own on 127.0.0.1, in a temporary folder."""
    with LocalPostgres() as server:
        yield server
