"""`intermission init`: a project folder with a prefect.yaml of the package's deployments and an
objective to start from.

The prefect.yaml lists `catalog.DEPLOYMENTS` for a work pool, with the entry points of the
installed package and a pull step that starts each flow run in the project's folder (its
absolute path: Prefect resolves a `{{ $PWD }}` there only when the run starts, in the
worker's environment); `prefect deploy --all` registers what `intermission deploy` does. It is written
without a YAML library: every value is a JSON scalar, which is valid YAML.
"""

from __future__ import annotations

import json
from importlib import resources
from importlib.metadata import version
from pathlib import Path
from typing import Any

from prefect_intermission.deploy.catalog import DeploymentSpec
from prefect_intermission.errors import ConfigurationError

OBJECTIVE_FILE = "my_objective.py"
PREFECT_YAML = "prefect.yaml"


def deployment_entry(spec: DeploymentSpec, pool: str) -> dict[str, Any]:
    """A prefect.yaml `deployments:` entry for `spec`, as the YAML parser reads it."""
    entry: dict[str, Any] = {
        "name": spec.name,
        "description": spec.description,
        "entrypoint": spec.entrypoint,
        "tags": list(spec.tags),
        "work_pool": {"name": pool, **({"work_queue_name": spec.work_queue} if spec.work_queue else {})},
    }
    if spec.parameters:
        entry["parameters"] = dict(spec.parameters)
    if spec.schedules:
        entry["schedules"] = [{"cron": s.cron, "timezone": s.timezone, "active": True} for s in spec.schedules]
    return entry


def prefect_yaml(specs: tuple[DeploymentSpec, ...], *, pool: str, directory: Path) -> str:
    """The text of a prefect.yaml that deploys `specs` to work pool `pool`, their flow runs
    starting in `directory` (an absolute path)."""
    lines = [
        "# The deployments of prefect-intermission, written by `intermission init`.",
        "# `prefect deploy --all` registers them (as `intermission deploy --pool POOL` does). Each",
        "# flow run starts in the pull step's directory, where objectives are imported from and a",
        "# study's relative storage and checkpoint paths point: this folder on the worker's machine.",
        f"name: {json.dumps(directory.name)}",
        f"prefect-version: {json.dumps(version('prefect'))}",
        "",
        "build: null",
        "push: null",
        "pull:",
        "  - prefect.deployments.steps.set_working_directory:",
        f"      directory: {json.dumps(str(directory))}",
        "",
        "deployments:",
    ]
    for spec in specs:
        lines += _yaml_mapping(deployment_entry(spec, pool), indent=2, first_prefix="- ")
        lines.append("")
    return "\n".join(lines)


def _yaml_mapping(mapping: dict[str, Any], *, indent: int, first_prefix: str = "") -> list[str]:
    """Block-style YAML of a mapping whose leaves are JSON scalars or lists of them or of mappings."""
    lines = []
    for i, (key, value) in enumerate(mapping.items()):
        prefix = " " * indent + (first_prefix if i == 0 else " " * len(first_prefix))
        if isinstance(value, dict):
            lines.append(f"{prefix}{key}:")
            lines += _yaml_mapping(value, indent=len(prefix) + 2)
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            lines.append(f"{prefix}{key}:")
            for item in value:
                lines += _yaml_mapping(item, indent=len(prefix) + 2, first_prefix="- ")
        else:
            lines.append(f"{prefix}{key}: {json.dumps(value)}")
    return lines


def objective_template() -> str:
    """The objective `intermission init` writes: the README's quickstart objective."""
    return resources.files("prefect_intermission.deploy").joinpath("templates", OBJECTIVE_FILE).read_text()


def init_project(
    directory: Path, specs: tuple[DeploymentSpec, ...], *, pool: str, force: bool = False
) -> list[Path]:
    """Write prefect.yaml and my_objective.py into `directory`; the paths written.

    Refuses to overwrite either file unless `force`.
    """
    files = {
        directory / PREFECT_YAML: prefect_yaml(specs, pool=pool, directory=directory.resolve()),
        directory / OBJECTIVE_FILE: objective_template(),
    }
    existing = [path.name for path in files if path.exists()]
    if existing and not force:
        raise ConfigurationError(
            f"{' and '.join(existing)} already exist in {directory}: nothing written. "
            "Pass --force to overwrite them, or run it in another folder."
        )
    for path, text in files.items():
        path.write_text(text)
    return list(files)
