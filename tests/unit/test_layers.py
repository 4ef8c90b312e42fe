"""The import contracts in pyproject.toml ([tool.importlinter]) hold, and fail on a forbidden import."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def _lint_imports(config: Path, cwd: Path, **env: str) -> tuple[int, str]:
    """lint-imports' exit status and output (its chains on unwrapped lines)."""
    result = subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo", str(config)],
        cwd=cwd, env={**os.environ, "COLUMNS": "300", **env},
        capture_output=True, text=True, timeout=50,
    )
    return result.returncode, result.stdout + result.stderr


def _contracts() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]


def test_the_import_contracts_hold():
    returncode, output = _lint_imports(ROOT / "pyproject.toml", cwd=ROOT)
    assert returncode == 0, output


def _toml(table: dict) -> str:
    """The [tool.importlinter] table as TOML (its values are strings, booleans and lists of strings)."""
    lines = ["[tool.importlinter]"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in table.items() if k != "contracts"]
    for contract in table["contracts"]:
        lines += ["", "[[tool.importlinter.contracts]]"]
        lines += [f"{k} = {json.dumps(v)}" for k, v in contract.items()]
    return "\n".join(lines) + "\n"


LAYERS = "Layers: each package imports only the packages below it"
NO_CIRCLES = "No circles: the modules of each package import each other one way"


@pytest.mark.parametrize(
    ("module", "added", "contract", "reported"),
    [
        ("training/_rng.py", "prefect", "The training code runs without Prefect", "prefect_intermission.training._rng -> prefect (l."),
        ("blocks/pause_policy.py", "torch", "The block types (the prefect.collections entry point) stay light", "prefect_intermission.blocks.pause_policy -> torch (l."),
        # An upward import: the study's code reaching up into the operations on a study.
        ("study/scheduler.py", "prefect_intermission.control.run_control", LAYERS, "prefect_intermission.study.scheduler -> prefect_intermission.control.run_control (l."),
        # A circle between two modules of one package (the one the store and its trials had).
        ("training/checkpoints.py", "prefect_intermission.training.store", NO_CIRCLES, "No cycles are allowed in prefect_intermission.training."),
    ],
    ids=["prefect-in-training", "torch-in-blocks", "upward-import", "circle"],
)
def test_a_forbidden_import_breaks_its_contract(tmp_path, module, added, contract, reported):
    copy = tmp_path / "prefect_intermission"
    shutil.copytree(
        ROOT / "plugins" / "prefect_intermission", copy, ignore=shutil.ignore_patterns("__pycache__")
    )
    source = copy / module
    source.write_text(source.read_text() + f"\nimport {added}\n")
    table = _contracts()
    assert contract in [c["name"] for c in table["contracts"]]
    (tmp_path / "importlinter.toml").write_text(_toml(table))

    returncode, output = _lint_imports(  # PYTHONPATH: the copy before the installed package
        tmp_path / "importlinter.toml", cwd=tmp_path, PYTHONPATH=str(tmp_path)
    )

    assert returncode == 1, output
    assert f"{contract} BROKEN" in output, output
    assert reported in output, output
