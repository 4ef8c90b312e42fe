"""A study's flow run records where its study is; a later execution of the same run that
does not find that study there stops before any training, and creates or changes nothing.

Each execution runs in this process with `run_flow`, against the real Prefect server of
the `prefect_server` fixture (as in tests/integration/test_run_story.py). The re-execution from
another working directory, through a deployment, is in tests/e2e/test_study_location.py.
"""

from __future__ import annotations

import shutil
import uuid
from typing import Any

import optuna
import pytest
from prefect.client.orchestration import get_client
from prefect.flow_engine import run_flow
from prefect.states import Pending

from prefect_intermission.study.config import grouped_parameters
from prefect_intermission import ConfigurationError, optimize_study
from prefect_intermission.study.config import StudyConfig
from prefect_intermission.study.location import (
    CHECKPOINTS_LABEL,
    STORAGE_LABEL,
    STUDY_LABEL,
    StudyLocation,
)
from prefect_intermission.study.state import STUDY_UID_ATTR

pytestmark = pytest.mark.usefixtures("prefect_server")


def _new_run(parameters: dict[str, Any]):
    with get_client(sync_client=True) as client:
        return client.create_flow_run(optimize_study, parameters=parameters, state=Pending())


def _execute_again(flow_run_id):
    """What a resume does: the same run, Pending again, executed from the top."""
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(flow_run_id, Pending(), force=True)
        return client.read_flow_run(flow_run_id)


def _labels(flow_run_id) -> dict[str, Any]:
    with get_client(sync_client=True) as client:
        return client.read_flow_run(flow_run_id).labels


def _study_attrs(storage: str, name: str) -> dict[str, Any]:
    study = optuna.load_study(study_name=name, storage=storage)
    return study._storage.get_study_system_attrs(study._study_id)


def _trials(storage: str, name: str) -> list[tuple]:
    """What a study holds, to compare before and after."""
    study = optuna.load_study(study_name=name, storage=storage)
    return [(t.number, t.state, t.params, t.intermediate_values, t.system_attrs) for t in study.trials]


def test_a_re_execution_that_finds_another_study_or_none_stops_before_training(tmp_path):
    name = f"where-{uuid.uuid4().hex[:6]}"
    db, moved = tmp_path / "s.db", tmp_path / "moved.db"
    storage = f"sqlite:///{db}"
    parameters = grouped_parameters({
        "study_name": name, "objective": "tests.objectives:classifier", "n_trials": 1, "max_epochs": 2,
        "storage": storage, "checkpoints": str(tmp_path / "ckpt"), "seed": 1,
    })
    flow_run = _new_run(parameters)
    assert run_flow(optimize_study, flow_run=flow_run, parameters=parameters)["status"] == "completed"

    # The first execution recorded the study's places and its identity with the run.
    uid = _study_attrs(storage, name)[STUDY_UID_ATTR]
    labels = _labels(flow_run.id)
    assert labels[STORAGE_LABEL] == storage
    assert labels[CHECKPOINTS_LABEL] == str(tmp_path / "ckpt")
    assert labels[STUDY_LABEL] == uid
    shutil.move(db, moved)
    done = _trials(f"sqlite:///{moved}", name)

    def refused(problem: str) -> str:
        with pytest.raises(ConfigurationError, match=problem) as error:
            run_flow(optimize_study, flow_run=_execute_again(flow_run.id), parameters=parameters)
        message = str(error.value)
        assert f"Its first execution ran the study with storage {storage} and checkpoints {tmp_path / 'ckpt'}" in message
        assert "Nothing was created or changed" in message
        return message

    # The SQLite file is gone (a new container at the same path): not created again.
    refused(f"cannot continue study '{name}' here: the SQLite file {db} does not exist")
    assert not db.exists()

    # A database there without the study.
    optuna.create_study(study_name="another", storage=storage)
    refused(f"the storage holds no study named '{name}'")
    assert optuna.get_all_study_names(storage) == ["another"]

    # A study of the same name created again: not this run's, and left as it is.
    optuna.delete_study(study_name="another", storage=storage)
    optuna.create_study(study_name=name, storage=storage)
    refused(f"the study named '{name}' there is another one than this run started")
    assert optuna.load_study(study_name=name, storage=storage).trials == []
    assert STUDY_UID_ATTR not in _study_attrs(storage, name)

    # The study back where it was: the run goes on, and the study was never touched meanwhile.
    shutil.move(moved, db)
    assert _trials(storage, name) == done and _study_attrs(storage, name)[STUDY_UID_ATTR] == uid
    assert run_flow(optimize_study, flow_run=_execute_again(flow_run.id), parameters=parameters)["status"] == "completed"

    # A new run of the same study (run again by hand) continues it, as always.
    assert optimize_study(**{**parameters, "n_trials": 2})["status"] == "completed"
    assert [t.number for t in optuna.load_study(study_name=name, storage=storage).trials] == [0, 1]


def test_recorded_places_are_absolute_and_show_no_password(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    relative = StudyLocation.of(StudyConfig(study_name="s", objective="m:f"))
    assert relative == StudyLocation(
        f"sqlite:///{tmp_path}/.intermission/studies.db", f"{tmp_path}/.intermission/checkpoints"
    )
    remote = StudyLocation.of(StudyConfig(
        study_name="s", objective="m:f", storage="postgresql+psycopg://me:hunter2@db/optuna",
        checkpoints="sftp://me:hunter2@host/ckpt",
    ))
    assert "hunter2" not in str(remote)
    assert str(remote) == "storage postgresql+psycopg://me:***@db/optuna and checkpoints sftp://me:***@host/ckpt"
