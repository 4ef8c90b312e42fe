"""Importing the package, loading its Prefect collection and `intermission --help` stay light.

Each check runs in a fresh interpreter, so what this test session imported does not count.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

HEAVY = ["torch", "optuna", "optuna.visualization", "prefect_intermission.flows"]


def _imported_after(code: str) -> list[str]:
    """Which of HEAVY are in sys.modules once `code` has run (even if it exits)."""
    script = textwrap.dedent(
        f"""
        import atexit, json, sys
        atexit.register(lambda: print(json.dumps([m for m in {HEAVY!r} if m in sys.modules])))
        """
    ) + textwrap.dedent(code)
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def test_importing_the_package_imports_no_torch_optuna_or_flows():
    assert _imported_after("import prefect_intermission") == []


def test_the_prefect_collection_entry_point_loads_only_the_blocks():
    code = """
        from importlib.metadata import entry_points

        (entry_point,) = entry_points(group="prefect.collections", name="prefect_intermission")
        blocks = entry_point.load()
        assert blocks.PausePolicy.__name__ == "PausePolicy"
        assert blocks.CheckpointStorageCredentials.__name__ == "CheckpointStorageCredentials"
    """
    assert _imported_after(code) == []


@pytest.mark.parametrize("args", [["--help"], ["status", "--help"], ["report", "--help"]])
def test_intermission_help_imports_no_torch_optuna_or_flows(args):
    code = f"""
        import sys
        from prefect_intermission.cli.commands import main

        sys.argv = ["intermission", *{args!r}]
        try:
            main()
        except SystemExit as e:
            assert e.code == 0, e.code
    """
    assert _imported_after(code) == []
