"""Register the package's deployments (`catalog.DEPLOYMENTS`) for a work pool: `intermission deploy`.

Each is a `RunnerDeployment` made from its module entry point, with a pull step that sets
the flow run's working directory (where a study's objective is imported from and where its
relative `storage` and `checkpoints` paths point), and applied: a deployment of that name
that exists already is updated.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.deployments.runner import RunnerDeployment
from prefect.exceptions import ObjectNotFound
from prefect.runner.storage import LocalStorage
from prefect.schedules import Cron

from prefect_intermission.deploy.catalog import DeploymentSpec
from prefect_intermission.errors import ConfigurationError


@dataclass(frozen=True)
class Registered:
    """A deployment as registered: its full name (`flow/deployment`), id and spec."""

    full_name: str
    id: UUID
    spec: DeploymentSpec


def register(specs: tuple[DeploymentSpec, ...], *, pool: str, directory: Path) -> list[Registered]:
    """Create or update each deployment of `specs` on the Prefect API for work pool `pool`.

    Args:
        specs: What to deploy (`catalog.DEPLOYMENTS`, possibly with another time zone).
        pool: The work pool; it must exist.
        directory: The working directory of the flow runs, on the worker's machine.
    """
    _check_pool(pool)
    registered = []
    for spec in specs:
        deployment = RunnerDeployment.from_entrypoint(
            spec.entrypoint,
            name=spec.name,
            description=spec.description,
            schedules=[Cron(s.cron, timezone=s.timezone) for s in spec.schedules],
            parameters=dict(spec.parameters),
            tags=list(spec.tags),
            work_pool_name=pool,
            work_queue_name=spec.work_queue,
        )
        # The pull step `prefect.deployments.steps.set_working_directory`: the flow run
        # starts in `directory` instead of a temporary folder.
        deployment.storage = LocalStorage(str(directory))
        registered.append(Registered(deployment.full_name, deployment.apply(), spec))
    return registered


def _check_pool(pool: str) -> None:
    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(pool)
        except ObjectNotFound as e:
            raise ConfigurationError(
                f"There is no work pool {pool!r} on the Prefect server at {client.api_url}. Create it "
                f"first, e.g. `prefect work-pool create {pool} --type process`, or name an existing one."
            ) from e
