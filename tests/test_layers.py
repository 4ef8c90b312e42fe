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

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def _lint_imports(config: Path, cwd: Path, **env: str) -> tuple[int, str]:
    """lint-imports' exit status and output (its chains on unwrapped lines)."""
    result = subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo", str(config)],
        cwd=cwd, env={**os.environ, "COLUMNS": "300", **env},
        capture_output=True, text=True, timeout=120,
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


@pytest.mark.parametrize(
    ("module", "forbidden", "contract_of"),
    [
        ("training/_rng.py", "prefect", "prefect_intermission.training"),
        ("blocks/pause_policy.py", "torch", "prefect_intermission.blocks"),
    ],
)
def test_a_forbidden_import_breaks_its_contract(tmp_path, module, forbidden, contract_of):
    copy = tmp_path / "prefect_intermission"
    shutil.copytree(
        ROOT / "plugins" / "prefect_intermission", copy, ignore=shutil.ignore_patterns("__pycache__")
    )
    source = copy / module
    source.write_text(source.read_text() + f"\nimport {forbidden}\n")
    table = _contracts()
    (tmp_path / "importlinter.toml").write_text(_toml(table))

    returncode, output = _lint_imports(  # PYTHONPATH: the copy before the installed package
        tmp_path / "importlinter.toml", cwd=tmp_path, PYTHONPATH=str(tmp_path)
    )

    (name,) = [c["name"] for c in table["contracts"] if contract_of in c["source_modules"]]
    importer = "prefect_intermission." + module.removesuffix(".py").replace("/", ".")
    assert returncode == 1, output
    assert f"{name} BROKEN" in output, output
    assert f"{importer} -> {forbidden} (l." in output, output
