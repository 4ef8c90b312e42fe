"""End to end: a study with its checkpoints in S3, and one with its Optuna storage in
PostgreSQL, paused the way the UI pauses it and resumed through the deployment."""

from __future__ import annotations

import uuid

import optuna
import s3fs
from optuna.trial import TrialState
from sqlalchemy.pool import NullPool

from deployments.ui_actions import (
    process_is_gone,
    policy_waiting_for_resume,
    start_deployment_run,
    ui_pause,
    ui_resume,
    wait_for,
    wait_for_state,
    wait_until_mid_training,
)
from prefect_intermission import CheckpointStorageCredentials, CheckpointStore
from prefect_intermission.study.state import TRIAL_STATUS_ATTR
from tests.e2e.studies import final_weights, trained_epochs, trials

N_TRIALS = 3
MAX_EPOCHS = 6


def _pause_and_resume(storage, study_name: str, parameters: dict) -> object:
    """Start the study, pause it mid-training like the UI, check it stopped, resume it to the end."""
    # Resumed by hand below: the run must wait for it, not resume when the dialog's timeout passes.
    run = start_deployment_run(
        "pausable-study/digits-demo", {**parameters, "pause_policy": policy_waiting_for_resume()}
    )
    wait_until_mid_training(storage, study_name, min_epochs=2)
    ui_pause(run.id, timeout_seconds=300)
    suspended = wait_for_state(run.id, "Suspended", timeout=120)
    wait_for(lambda: process_is_gone(wait_for_state(run.id, "Suspended")), timeout=60,
             what="the flow's process to exit")
    paused = [t for t in trials(storage, study_name) if t.state == TrialState.RUNNING]
    assert paused and all(t.system_attrs[TRIAL_STATUS_ATTR] == "paused" for t in paused)
    assert suspended.state.name == "Suspended"
    ui_resume(run.id)
    wait_for_state(run.id, "Completed", timeout=300)
    return run, paused


def _assert_complete_once(run, storage, study_name: str) -> list:
    got = trials(storage, study_name)
    assert [t.number for t in got] == list(range(N_TRIALS))
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in got)

    def epoch_lines():  # the last lines reach the API shortly after the run ends
        counts = trained_epochs(run.id)
        complete = {(t.number, max(t.intermediate_values)) for t in got if t.state == TrialState.COMPLETE}
        return counts if complete <= set(counts) else None

    counts = wait_for(epoch_lines, timeout=30, what="the run's epoch log lines")
    assert max(counts.values()) == 1, {k: v for k, v in counts.items() if v > 1}
    return got


def test_a_study_with_s3_checkpoints_pauses_and_resumes(prefect_stack, s3_server, s3_bucket, tmp_path):
    study_name = f"s3-{uuid.uuid4().hex[:6]}"
    storage = f"sqlite:///{tmp_path}/studies.db"
    block = f"test-s3-{uuid.uuid4().hex[:6]}"
    CheckpointStorageCredentials(
        aws_access_key_id=s3_server.storage_options["key"],
        aws_secret_access_key=s3_server.storage_options["secret"],
        endpoint_url=s3_server.endpoint_url,
    ).save(block)
    checkpoints = f"s3://{s3_bucket}/studies"
    run, paused = _pause_and_resume(storage, study_name, {
        "study_name": study_name, "storage": storage, "checkpoints": checkpoints,
        "checkpoint_credentials": block, "n_trials": N_TRIALS, "max_epochs": MAX_EPOCHS, "seed": 3,
    })
    got = _assert_complete_once(run, storage, study_name)

    # The checkpoints are in the bucket, none on the worker's disk, and the resumed
    # trials continued from them to their last epoch.
    fs = s3fs.S3FileSystem(**s3_server.storage_options, skip_instance_cache=True)
    stored = fs.find(f"{s3_bucket}/studies/{study_name}")
    assert stored, "no checkpoint reached the bucket"
    assert not (tmp_path / "checkpoints").exists()
    options = {**s3_server.storage_options, "skip_instance_cache": True}
    for t in got:
        if t.number in {p.number for p in paused} and t.state == TrialState.COMPLETE:
            loaded = CheckpointStore(checkpoints, storage_options=options).for_trial(study_name, t.number).load_latest_valid()
            state = loaded.state
            assert loaded.fallbacks == [] and state["epoch"] == MAX_EPOCHS - 1
            assert state["components"]["model"]


def test_a_study_in_postgresql_pauses_and_resumes_with_every_trial_once(prefect_stack, postgres_server, tmp_path):
    study_name = f"pg-{uuid.uuid4().hex[:6]}"
    # The test reads the study without keeping connections open between its polls.
    storage = optuna.storages.RDBStorage(postgres_server.url, engine_kwargs={"poolclass": NullPool})
    checkpoints = str(tmp_path / "checkpoints")
    run, paused = _pause_and_resume(storage, study_name, {
        "study_name": study_name, "storage": postgres_server.url, "checkpoints": checkpoints,
        "n_trials": N_TRIALS, "max_epochs": MAX_EPOCHS, "seed": 5,
    })
    got = _assert_complete_once(run, storage, study_name)
    for t in got:
        if t.state == TrialState.COMPLETE:
            assert len(final_weights(checkpoints, study_name, t.number)) > 0
    assert {p.number for p in paused} <= {t.number for t in got}
