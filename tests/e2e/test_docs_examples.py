"""The documentation site's Python examples run as written.

Each is the block after a `<!-- readme-example: NAME -->` on a page under docs/; the site's
other Python blocks are fragments marked `<!-- docs-fragment: ... -->`, which
tests/unit/test_docs_reference.py checks parse. The quickstart's example is the README's
(tests/e2e/test_quickstart.py runs it; the site's copy is checked equal to it). Shell
examples are not run, but for the Quickstart's commands.
"""

from __future__ import annotations

import subprocess
import sys

import optuna
from optuna.trial import TrialState

from prefect_intermission import CheckpointStore
from tests.docs_examples import example as _example


def _run_example(tmp_path, env: dict[str, str], *names: str, study: str) -> optuna.Study:
    """Write the examples `names` into `tmp_path`, run the last as a script, and load the study it made."""
    for name in names:
        (tmp_path / name).write_text(_example(name))
    done = subprocess.run(
        [sys.executable, names[-1]], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return optuna.load_study(study_name=study, storage=f"sqlite:///{tmp_path}/.intermission/studies.db")


def test_the_own_loop_example_runs_a_study(prefect_stack, tmp_path):
    study = _run_example(tmp_path, prefect_stack.env, "my_objective.py", study="my-search")
    assert len(study.trials) == 5
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.trials)
    assert all(len(t.intermediate_values) >= 1 for t in study.trials)


def test_the_within_epoch_example_runs_a_study_checkpointing_within_epochs(prefect_stack, tmp_path):
    study = _run_example(tmp_path, prefect_stack.env, "my_step_objective.py", study="my-step-search")
    assert len(study.trials) == 3
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.trials)
    assert all(len(t.intermediate_values) >= 1 for t in study.trials)
    # Every batch went through loop.step(): 512 examples in batches of 32 are 16 steps an epoch.
    store = CheckpointStore(str(tmp_path / ".intermission" / "checkpoints"))
    for trial in study.trials:
        latest = store.for_trial("my-step-search", trial.number).load_latest_valid().state
        assert latest["global_step"] == 16 * (latest["epoch"] + 1), trial.number


def test_the_lightning_example_runs_a_study(prefect_stack, tmp_path):
    study = _run_example(tmp_path, prefect_stack.env, "my_lightning_objective.py", study="my-lightning-search")
    assert len(study.trials) == 3
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.trials)
    assert all(len(t.intermediate_values) >= 1 for t in study.trials)


def test_the_lightning_example_with_a_trainer_of_ones_own_runs_a_study(prefect_stack, tmp_path):
    study = _run_example(  # the second imports the first's module
        tmp_path, prefect_stack.env, "my_lightning_objective.py", "my_trainer_objective.py", study="my-trainer-search"
    )
    assert len(study.trials) == 2
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.trials)
    assert all(t.value == min(t.intermediate_values.values()) for t in study.trials if t.state == TrialState.COMPLETE)


def test_the_transformers_example_runs_a_study(prefect_stack, tmp_path):
    env = {**prefect_stack.env, "HF_HUB_OFFLINE": "1"}
    study = _run_example(tmp_path, env, "my_transformers_objective.py", study="my-hf-search")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3
    assert all(list(t.intermediate_values) == [0, 1] for t in study.trials)
    assert all(t.value == min(t.intermediate_values.values()) for t in study.trials)  # the best eval_loss


def test_the_blocks_the_examples_save_are_saved_and_load(prefect_stack, tmp_path):
    for name in ("save_pause_policy.py", "save_checkpoint_credentials.py"):
        (tmp_path / name).write_text(_example(name))
        done = subprocess.run(
            [sys.executable, name], cwd=tmp_path, env=prefect_stack.env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
    loaded = subprocess.run(
        [sys.executable, "-c", (
            "from prefect_intermission import CheckpointStorageCredentials, PausePolicy\n"
            "policy = PausePolicy.load('nightly')\n"
            "credentials = CheckpointStorageCredentials.load('team-checkpoints')\n"
            "print(policy.resume_cron, policy.timezone, credentials.region_name)"
        )],
        cwd=tmp_path, env=prefect_stack.env, capture_output=True, text=True, timeout=120,
    )
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.split() == ["0", "22", "*", "*", "*", "Europe/Berlin", "eu-west-1"]
