"""The README's objective examples run as written and complete their studies."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import optuna
from optuna.trial import TrialState

README = Path(__file__).resolve().parents[2] / "README.md"


def _example(name: str) -> str:
    text = README.read_text()
    match = re.search(rf"<!-- readme-example: {re.escape(name)} -->\n```python\n(.*?)```", text, re.S)
    assert match, f"README has no example {name}"
    return match.group(1)


def test_the_readme_objective_example_runs_a_study(prefect_stack, tmp_path):
    (tmp_path / "my_objective.py").write_text(_example("my_objective.py"))
    done = subprocess.run(
        [sys.executable, "my_objective.py"], cwd=tmp_path, env=prefect_stack.env,
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    study = optuna.load_study(study_name="my-search", storage=f"sqlite:///{tmp_path}/.intermission/studies.db")
    assert len(study.trials) == 5
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.trials)
    assert all(len(t.intermediate_values) >= 1 for t in study.trials)


def test_the_readme_lightning_example_runs_a_study(prefect_stack, tmp_path):
    (tmp_path / "my_lightning_objective.py").write_text(_example("my_lightning_objective.py"))
    done = subprocess.run(
        [sys.executable, "my_lightning_objective.py"], cwd=tmp_path, env=prefect_stack.env,
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    study = optuna.load_study(
        study_name="my-lightning-search", storage=f"sqlite:///{tmp_path}/.intermission/studies.db"
    )
    assert len(study.trials) == 3
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.trials)
    assert all(len(t.intermediate_values) >= 1 for t in study.trials)


def test_the_readme_transformers_example_runs_a_study(prefect_stack, tmp_path):
    (tmp_path / "my_transformers_objective.py").write_text(_example("my_transformers_objective.py"))
    done = subprocess.run(
        [sys.executable, "my_transformers_objective.py"], cwd=tmp_path,
        env={**prefect_stack.env, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    study = optuna.load_study(study_name="my-hf-search", storage=f"sqlite:///{tmp_path}/.intermission/studies.db")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3
    assert all(list(t.intermediate_values) == [0, 1] for t in study.trials)
    assert all(t.value == min(t.intermediate_values.values()) for t in study.trials)  # the best eval_loss
