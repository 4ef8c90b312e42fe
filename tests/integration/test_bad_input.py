"""Bad input: a clear error naming the problem and the fix, before work starts, with nothing stored changed."""

from __future__ import annotations

import hashlib
import json
import re

import optuna
import pytest

from prefect_intermission import (
    CheckpointError,
    ConfigurationError,
    IntermissionError,
    ObjectiveImportError,
    optimize_study,
)
from prefect_intermission.study.state import TRIAL_STATUS_ATTR

pytestmark = pytest.mark.usefixtures("prefect_server")

OBJECTIVE = "tests.objectives:classifier"


def _run(tmp_path, **overrides):
    parameters = {
        "study_name": "study",
        "objective": OBJECTIVE,
        "n_trials": 2,
        "max_epochs": 3,
        "storage": f"sqlite:///{tmp_path}/studies.db",
        "checkpoints": str(tmp_path / "checkpoints"),
        "seed": 1,
        "sampler": "random",
        **overrides,
    }
    return optimize_study(**parameters)


def _snapshot(tmp_path) -> dict:
    """Everything stored: the study database's trials and attributes, and every checkpoint file's hash."""
    db = tmp_path / "studies.db"
    trials = []
    if db.exists():
        for summary in optuna.get_all_study_summaries(f"sqlite:///{db}"):
            study = optuna.load_study(study_name=summary.study_name, storage=f"sqlite:///{db}")
            trials += [
                (summary.study_name, t.number, t.state.name, t.params, t.intermediate_values, t.value,
                 json.dumps(t.system_attrs, sort_keys=True))
                for t in study.trials
            ]
    files = {
        str(p.relative_to(tmp_path)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(tmp_path.rglob("*")) if p.is_file() and p.name != "studies.db"
    }
    return {"trials": trials, "files": files}


@pytest.fixture
def paused_study(tmp_path):
    """A study with one finished trial and one paused after epoch 1, as a pause leaves it."""

    from prefect_intermission import PauseSignal
    from prefect_intermission.training.store import CheckpointStore
    from prefect_intermission.study.setup import load_study_state
    from prefect_intermission.study.attempt import AttemptSettings, run_trial_attempt
    from prefect_intermission.training.trial_settings import TrainingSettings
    from tests.objectives import classifier

    class PauseAfterTwo(PauseSignal):
        checks = 0

        def is_requested(self) -> bool:
            self.checks += 1
            return self.checks > 1

    state = load_study_state("study", f"sqlite:///{tmp_path}/studies.db", seed=1,
                             direction="minimize", sampler="random", pruner="median")
    store = CheckpointStore(str(tmp_path / "checkpoints"))
    kwargs = dict(checkpoints=store, settings=AttemptSettings(TrainingSettings(max_epochs=3), study_seed=1))
    run_trial_attempt(state, state.study.ask(), classifier, pause_signal=PauseSignal(), **kwargs)
    run_trial_attempt(state, state.study.ask(), classifier, pause_signal=PauseAfterTwo(), **kwargs)
    assert state.study.trials[1].system_attrs[TRIAL_STATUS_ATTR] == "paused"
    return tmp_path


@pytest.mark.parametrize(
    ("overrides", "error", "message"),
    [
        ({"n_trials": 0}, ConfigurationError, "budget.n_trials = 0: Input should be greater than or equal to 1 (Finished trials wanted"),
        ({"max_epochs": 0}, ConfigurationError, "training.max_epochs = 0: Input should be greater than or equal to 1 (Epochs a trial trains at most.)"),
        ({"max_concurrent_trials": 0}, ConfigurationError, "execution.max_concurrent_trials = 0: Input should be greater than or equal to 1"),
        ({"objective": "no_such_module:objective"}, ObjectiveImportError, "Cannot import module 'no_such_module'"),
        ({"objective": "tests.objectives:missing"}, ObjectiveImportError, "has no attribute 'missing'"),
        ({"objective": "tests.objectives"}, ObjectiveImportError, "must look like 'package.module:function'"),
        ({"storage": "nosuchdialect://host/db"}, ConfigurationError, "Cannot open the study storage"),
        ({"checkpoints": "/proc/intermission-checkpoints"}, ConfigurationError, "Cannot write to the checkpoint location"),
        ({"checkpoints": "nosuchproto://bucket/x"}, ConfigurationError, "Cannot open the checkpoint location"),
        ({"sampler": "grid"}, ConfigurationError, "Unknown sampler 'grid'. Accepted: BruteForceSampler, CmaEsSampler"),
        ({"pruner": {"name": "HyperbandPruner", "max_resources": 9}}, ConfigurationError,
         "pruner 'HyperbandPruner' takes no argument(s) 'max_resources'; it accepts: min_resource, max_resource"),
        ({"sampler": {"multivariate": True}}, ConfigurationError, 'a JSON object with a "name"'),
        ({"catch": ["NoSuchError"]}, ConfigurationError, "catch lists 'NoSuchError', which names no exception class"),
        ({"callbacks": ["tests.objectives:missing"]}, ConfigurationError, "has no attribute 'missing' (callback factory"),
        ({"max_failed_trials": 0}, ConfigurationError, "budget.max_failed_trials = 0: Input should be greater than or equal to 1"),
        ({"timeout": -5}, ConfigurationError, "budget.timeout = -5: Input should be greater than 0 (Seconds of training"),
        # The study exists: what it was started with is kept.
        ({"direction": "maximize"}, ConfigurationError,
         "Study 'study' was created with direction(s) ['minimize'], but this run asks for ['maximize']"),
        ({"sampler": "TPESampler"}, ConfigurationError,
         'searches with sampler {"name": "RandomSampler"} (this run: {"name": "TPESampler"})'),
        ({"pruner": "none"}, ConfigurationError, "allow_search_change=true"),
        ({"objective_params": {"data": "/elsewhere"}}, ConfigurationError,
         'was started with objective_params {}, but this run gives {"data": "/elsewhere"}'),
        ({"n_trials": "ten"}, ConfigurationError, "budget.n_trials = 'ten': Input should be a valid integer"),
    ],
)
def test_bad_parameters_fail_before_work_and_change_nothing(paused_study, overrides, error, message):
    before = _snapshot(paused_study)
    with pytest.raises(error, match=re.escape(message)):
        _run(paused_study, **overrides)
    assert _snapshot(paused_study) == before


def test_an_unreachable_storage_location_names_it_without_its_password(tmp_path):
    with pytest.raises(ConfigurationError, match="Cannot open the study storage") as raised:
        _run(tmp_path, storage="sqlite:////proc/no-such-dir/studies.db")
    assert "writable" in str(raised.value)
    with pytest.raises(ConfigurationError, match="The storage URL contains a password") as raised:
        _run(tmp_path, storage="postgresql+psycopg://alice:hunter2@127.0.0.1:1/studies")
    assert "hunter2" not in str(raised.value) and "PGPASSWORD" in str(raised.value)
    with pytest.raises(ConfigurationError, match="The storage URL contains a password") as raised:
        _run(tmp_path, storage="postgresql+psycopg://alice@127.0.0.1:1/studies?password=hunter2")
    assert "hunter2" not in str(raised.value)
    with pytest.raises(ConfigurationError, match="Cannot open the study storage") as raised:
        _run(tmp_path, storage="postgresql+psycopg://alice@127.0.0.1:1/studies")  # nothing listens
    assert "alice@127.0.0.1" in str(raised.value) and "reachable" in str(raised.value)


def test_resuming_a_study_whose_checkpoints_were_deleted_fails_and_changes_nothing(paused_study):
    for path in sorted((paused_study / "checkpoints").rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    before = _snapshot(paused_study)
    with pytest.raises(CheckpointError, match=r"checkpoints of trial\(s\) #1 .* are missing") as raised:
        _run(paused_study)
    assert "restart_trials_without_checkpoints=True" in str(raised.value)
    assert _snapshot(paused_study) == before
    # The way out the message names works: the trial is trained again with its parameters.
    params = optuna.load_study(study_name="study", storage=f"sqlite:///{paused_study}/studies.db").trials[1].params
    result = _run(paused_study, restart_trials_without_checkpoints=True)
    assert result["status"] == "completed"
    study = optuna.load_study(study_name="study", storage=f"sqlite:///{paused_study}/studies.db")
    assert study.trials[1].params == params and study.trials[1].state.name in ("COMPLETE", "PRUNED")


def test_checkpoints_of_another_format_version_fail_before_work(paused_study):
    manifest = next((paused_study / "checkpoints").rglob("trial-00001/manifest.json"))
    data = json.loads(manifest.read_text())
    data["format_version"] = 99
    manifest.write_text(json.dumps(data))
    before = _snapshot(paused_study)
    with pytest.raises(CheckpointError, match="format version 99, but this version of prefect-intermission reads versions 1 and 2"):
        _run(paused_study)
    assert _snapshot(paused_study) == before


def test_an_objective_that_raises_fails_the_run_with_its_error_and_keeps_the_rest(paused_study):
    before = _snapshot(paused_study)
    with pytest.raises(IntermissionError, match="Trial 1 of study 'study' failed: RuntimeError: boom") as raised:
        _run(paused_study, objective="tests.objectives:raises_at_second_epoch")
    assert "Fix the objective and run the study again" in str(raised.value)
    after = _snapshot(paused_study)
    assert after["trials"][0] == before["trials"][0]  # the finished trial is untouched
    assert after["trials"][1][2] == "FAIL"
    kept = {name: digest for name, digest in before["files"].items() if "trial-00000" in name}
    assert kept.items() <= after["files"].items()


def test_an_objective_edited_between_runs_fails_the_run_and_the_trial_waits_for_the_fix(paused_study):
    before = _snapshot(paused_study)
    with pytest.raises(IntermissionError, match="Trial 1 of study 'study' failed: CheckpointError") as raised:
        _run(paused_study, objective="tests.objectives:reshaped_classifier")
    assert "does not match its checkpoint" in str(raised.value)
    assert "#1 (2 epochs done)" in str(raised.value)
    assert "Fix what the error names and run the study again" in str(raised.value)
    after = _snapshot(paused_study)
    assert after["files"] == before["files"]  # every checkpoint kept as it was
    trial = optuna.load_study(study_name="study", storage=f"sqlite:///{paused_study}/studies.db").trials[1]
    assert (trial.state.name, trial.system_attrs[TRIAL_STATUS_ATTR]) == ("RUNNING", "paused")

    assert _run(paused_study)["status"] == "completed"  # the objective put back: trial 1 continues
    trial = optuna.load_study(study_name="study", storage=f"sqlite:///{paused_study}/studies.db").trials[1]
    assert trial.state.name in ("COMPLETE", "PRUNED")
    assert sorted(trial.intermediate_values) == [0, 1, 2]
