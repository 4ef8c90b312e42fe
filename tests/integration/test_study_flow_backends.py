"""The study flow refuses, before any training, a checkpoint bucket that does not exist and
a storage URL that would show a password in the UI."""

from __future__ import annotations

import uuid

import optuna
import pytest

from prefect_intermission import CheckpointStorageCredentials, ConfigurationError, optimize_study


def test_a_missing_bucket_stops_the_study_before_training(prefect_server, s3_server, tmp_path):
    block = f"test-s3-{uuid.uuid4().hex[:6]}"
    CheckpointStorageCredentials(
        aws_access_key_id=s3_server.storage_options["key"],
        aws_secret_access_key="the-secret-must-not-leak",
        endpoint_url=s3_server.endpoint_url,
    ).save(block)
    storage = f"sqlite:///{tmp_path}/studies.db"
    with pytest.raises(ConfigurationError, match="'missing-bucket-x' .*does not exist") as error:
        optimize_study(
            study_name="no-bucket", objective="flows.digits:objective", storage=storage,
            checkpoints="s3://missing-bucket-x/prefix", checkpoint_credentials=block, n_trials=1,
        )
    assert "the-secret-must-not-leak" not in str(error.value)
    assert optuna.get_all_study_names(storage) == []  # nothing was created, nothing trained


def test_a_password_in_the_storage_url_is_refused(prefect_server, tmp_path):
    with pytest.raises(ConfigurationError, match="contains a password.*PGPASSWORD") as error:
        optimize_study(
            study_name="pw", objective="flows.digits:objective",
            storage="postgresql+psycopg://user:hunter2@127.0.0.1:1/db",
            checkpoints=str(tmp_path), n_trials=1,
        )
    assert "hunter2" not in str(error.value)
