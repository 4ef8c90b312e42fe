"""`intermission deploy` and `init`: the package's one list of deployments, the repository's
prefect.yaml that uses the same entry points, what `deploy` registers on a real server, and
what `init` writes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from prefect import Flow
from prefect.client.orchestration import get_client
from prefect.utilities.importtools import import_object

from deployments.local_stack import PROJECT_ROOT, WORK_POOL
from prefect_intermission.cli.commands import main
from prefect_intermission.deploy.catalog import DEPLOYMENTS, NIGHTLY_RESUME, with_nightly_timezone
from prefect_intermission.deploy.project import deployment_entry
from prefect_intermission.errors import ConfigurationError

PREFECT_YAML = yaml.safe_load((PROJECT_ROOT / "prefect.yaml").read_text())
YAML_DEPLOYMENTS = {d["name"]: d for d in PREFECT_YAML["deployments"]}


@pytest.mark.parametrize("spec", DEPLOYMENTS, ids=lambda spec: spec.name)
def test_each_deployment_of_the_package_is_in_prefect_yaml_word_for_word(spec):
    """As `intermission init` writes it: name, entry point, description, tags, work pool and
    queue, parameters, schedules."""
    assert YAML_DEPLOYMENTS[spec.name] == deployment_entry(spec, WORK_POOL)


def test_prefect_yaml_uses_only_the_packages_entry_points():
    """The demos too: their objectives are repository files, given as parameters."""
    assert {d["entrypoint"] for d in YAML_DEPLOYMENTS.values()} <= {spec.entrypoint for spec in DEPLOYMENTS}


@pytest.mark.parametrize("spec", DEPLOYMENTS, ids=lambda spec: spec.name)
def test_each_entry_point_is_a_flow_of_the_installed_package(spec):
    """Imported the way a worker imports a `module:function` entry point (with a colon, so
    that Prefect runs the pull steps first: see catalog.py)."""
    assert ":" in spec.entrypoint
    flow = import_object(spec.entrypoint)
    assert isinstance(flow, Flow)
    assert Path(flow.fn.__code__.co_filename).is_relative_to(PROJECT_ROOT / "plugins" / "prefect_intermission")


def test_the_nightly_resume_takes_another_time_zone_and_refuses_an_unknown_one():
    specs = with_nightly_timezone(DEPLOYMENTS, "America/New_York")
    zones = {spec.name: [s.timezone for s in spec.schedules] for spec in specs}
    assert zones[NIGHTLY_RESUME] == ["America/New_York"]
    assert zones["abandon-expired-pauses"] == ["UTC"]  # the others keep theirs
    with pytest.raises(ConfigurationError, match="timezone must be an IANA time zone"):
        with_nightly_timezone(DEPLOYMENTS, "Mars/Olympus")


def test_intermission_deploy_registers_every_deployment_from_the_package(prefect_server, capsys):
    """Deployed the way the stack deploys prefect.yaml (same pool, same working directory), so
    the deployments the end-to-end tests use stay as they are."""
    prefect_server.create_work_pool()
    assert main(["deploy", "--pool", WORK_POOL, "--directory", str(PROJECT_ROOT)]) == 0
    out = capsys.readouterr().out
    assert "pausable-study/study" in out and f"prefect worker start --pool {WORK_POOL}" in out
    with get_client(sync_client=True) as client:
        for spec in DEPLOYMENTS:
            flow_name = import_object(spec.entrypoint).name
            deployment = client.read_deployment_by_name(f"{flow_name}/{spec.name}")
            assert deployment.entrypoint == spec.entrypoint
            assert deployment.work_pool_name == WORK_POOL
            assert deployment.work_queue_name == (spec.work_queue or "default")
            assert deployment.description == spec.description
            assert deployment.parameters == spec.parameters
            assert deployment.pull_steps == [
                {"prefect.deployments.steps.set_working_directory": {"directory": str(PROJECT_ROOT)}}
            ]
            assert sorted((s.schedule.cron, s.schedule.timezone) for s in deployment.schedules) == sorted(
                (s.cron, s.timezone) for s in spec.schedules
            )


def test_intermission_deploy_to_a_missing_pool_says_how_to_create_it(prefect_server, capsys):
    assert main(["deploy", "--pool", "no-such-pool"]) == 1
    err = capsys.readouterr().err
    assert "There is no work pool 'no-such-pool'" in err
    assert "prefect work-pool create no-such-pool --type process" in err


def test_intermission_init_writes_the_packages_deployments_and_the_quickstart_objective(tmp_path, capsys):
    args = ["init", "--pool", "my-pool", "--timezone", "America/New_York", "--directory", str(tmp_path)]
    assert main(args) == 0
    assert "prefect deploy --all" in capsys.readouterr().out
    written = yaml.safe_load((tmp_path / "prefect.yaml").read_text())
    # The folder's absolute path: a `{{ $PWD }}` would be the worker's folder when the run starts.
    assert written["pull"] == [
        {"prefect.deployments.steps.set_working_directory": {"directory": str(tmp_path.resolve())}}
    ]
    specs = with_nightly_timezone(DEPLOYMENTS, "America/New_York")
    assert written["deployments"] == [deployment_entry(spec, "my-pool") for spec in specs]
    readme = (PROJECT_ROOT / "README.md").read_text()
    quickstart = re.search(r"<!-- readme-example: quickstart/my_objective.py -->\n```python\n(.*?)```", readme, re.S)
    assert (tmp_path / "my_objective.py").read_text() == quickstart.group(1)

    # A second init keeps the user's files; --force overwrites them.
    (tmp_path / "my_objective.py").write_text("# mine\n")
    assert main(args) == 1
    assert "my_objective.py already exist" in capsys.readouterr().err
    assert (tmp_path / "my_objective.py").read_text() == "# mine\n"
    assert main([*args, "--force"]) == 0
    assert (tmp_path / "my_objective.py").read_text() == quickstart.group(1)
