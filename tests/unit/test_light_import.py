"""Importing the package, loading its Prefect collection and `intermission --help` stay light.

Each check runs in a fresh interpreter, so what this test session imported does not count.
What is checked is what was imported (`sys.modules`), never how long it took.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

# What none of the light paths below may import: the training stack, Optuna, the flows,
# the report's plotting, and what only a notification needs.
HEAVY = [
    "torch",
    "optuna",
    "optuna.visualization",
    "plotly",
    "apprise",
    "prefect_intermission.flows",
    "prefect_intermission.training",
]


def imported_after(code: str, *, env: dict[str, str] | None = None, watch: list[str] = HEAVY) -> list[str]:
    """Which of `watch` are in sys.modules once `code` has run in a fresh interpreter (even if it exits)."""
    script = textwrap.dedent(
        f"""
        import atexit, json, sys
        atexit.register(lambda: print("IMPORTED " + json.dumps([m for m in {watch!r} if m in sys.modules])))
        """
    ) + textwrap.dedent(code)
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=50,
        env=env if env is not None else os.environ.copy(),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (line,) = [l for l in result.stdout.splitlines() if l.startswith("IMPORTED ")]
    return json.loads(line.removeprefix("IMPORTED "))


def intermission_code(*args: str) -> str:
    """Python that runs `intermission ARGS` as its console script does, and fails on a non-zero exit."""
    return f"""
        import sys
        from prefect_intermission.cli.commands import main

        sys.argv = ["intermission", *{list(args)!r}]
        try:
            code = main()
        except SystemExit as e:
            code = e.code
        assert code in (0, None), code
    """


def test_importing_the_package_imports_no_torch_optuna_or_flows():
    assert imported_after("import prefect_intermission") == []


def test_importing_the_package_does_not_even_import_prefect():
    assert imported_after("import prefect_intermission", watch=["prefect"]) == []


def test_the_prefect_collection_entry_point_loads_only_the_blocks():
    """What a Prefect worker or server loads at start, for every installed collection."""
    code = """
        from importlib.metadata import entry_points

        (entry_point,) = entry_points(group="prefect.collections", name="prefect_intermission")
        blocks = entry_point.load()
        assert blocks.PausePolicy.__name__ == "PausePolicy"
        assert blocks.CheckpointStorageCredentials.__name__ == "CheckpointStorageCredentials"
    """
    assert imported_after(code) == []


def test_a_pause_policy_with_apprise_urls_still_checks_them():
    """Apprise loads when a policy has URLs to check, and a bad one is still refused."""
    code = """
        import pydantic
        from pydantic import SecretStr
        from prefect_intermission.blocks import PausePolicy

        PausePolicy(apprise_urls=[SecretStr("json://127.0.0.1:9/hook")])
        try:
            PausePolicy(apprise_urls=[SecretStr("not a url")])
        except pydantic.ValidationError as e:
            assert "apprise_urls[0] is not a URL Apprise can send to" in str(e), e
        else:
            raise AssertionError("an unusable Apprise URL was accepted")
    """
    assert imported_after(code, watch=["apprise", "torch"]) == ["apprise"]


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["--version"],
        ["status", "--help"],
        ["report", "--help"],
        ["pause", "--help"],
        ["resume", "--help"],
        ["best", "--help"],
        ["deploy", "--help"],
        ["init", "--help"],
    ],
)
def test_intermission_help_imports_no_prefect_torch_or_optuna(args):
    assert imported_after(intermission_code(*args), watch=[*HEAVY, "prefect"]) == []


def test_the_modules_intermission_status_runs_import_no_torch_or_plotting():
    """`intermission status` reads Optuna's storage and lists checkpoint files: no PyTorch needed.

    (tests/e2e/test_status.py checks a real `intermission status` of a study with checkpoints.)
    """
    code = """
        from prefect_intermission.cli import _status_table, status
    """
    watch = ["torch", "optuna.visualization", "plotly", "prefect_intermission.flows"]
    assert imported_after(code, watch=watch) == []
