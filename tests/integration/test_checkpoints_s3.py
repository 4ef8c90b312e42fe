"""Checkpoints in S3 (moto's S3 server on loopback): the same guarantees as on a local disk."""

from __future__ import annotations

import io
import json
import uuid

import pytest
import s3fs
import torch
from prefect_intermission import (
    CheckpointStorageCredentials,
    CheckpointStore,
    ConfigurationError,
)
from prefect_intermission.study.setup import open_checkpoint_store

from tests.manifests import list_as_written


def _objects(s3_server, prefix: str) -> list[str]:
    fs = s3fs.S3FileSystem(**s3_server.storage_options, skip_instance_cache=True)
    return sorted(fs.find(prefix))


def test_save_load_and_prune_over_s3(s3_server, s3_bucket):
    store = CheckpointStore(f"s3://{s3_bucket}/runs", keep_last=2, storage_options=s3_server.storage_options)
    store.verify()
    trial = store.for_trial("my study", 3)
    for epoch in range(4):
        trial.save(epoch, {"weights": torch.full((3,), float(epoch)), "epoch": epoch})

    assert trial.epochs() == [2, 3]
    assert _objects(s3_server, f"{s3_bucket}/runs") == [
        f"{s3_bucket}/runs/my%20study/trial-00003/epoch-00002.pt",
        f"{s3_bucket}/runs/my%20study/trial-00003/epoch-00003.pt",
        f"{s3_bucket}/runs/my%20study/trial-00003/manifest.json",
    ]
    state = trial.load_latest_valid().state
    assert state["epoch"] == 3 and torch.equal(state["weights"], torch.full((3,), 3.0))
    assert store.study_folder("my study") == f"s3://{s3_bucket}/runs/my%20study"


def test_a_new_process_sees_the_checkpoints_through_the_aws_environment(s3_server, s3_bucket, monkeypatch):
    writer = CheckpointStore(f"s3://{s3_bucket}/p", storage_options=s3_server.storage_options)
    writer.for_trial("s", 0).save(5, {"w": torch.ones(2)})
    for name, value in s3_server.env.items():
        monkeypatch.setenv(name, value)
    # No options at all: s3fs reads AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL.
    reader = CheckpointStore(f"s3://{s3_bucket}/p", storage_options={"skip_instance_cache": True})
    reader.verify()
    assert reader.for_trial("s", 0).epochs() == [5]
    assert torch.equal(reader.for_trial("s", 0).load_latest_valid().state["w"], torch.ones(2))


def test_a_checkpoint_of_another_format_version_is_refused_over_s3(s3_server, s3_bucket):
    trial = CheckpointStore(f"s3://{s3_bucket}", storage_options=s3_server.storage_options).for_trial("s", 0)
    buffer = io.BytesIO()
    torch.save({"format_version": 99, "epoch": 0}, buffer)
    _replace_with_manifest(trial, buffer.getvalue())
    loaded = trial.load_latest_valid()
    assert loaded.state is None and "format version 99" in loaded.fallbacks[0]["problem"]


def test_a_checkpoint_that_would_run_code_is_refused_over_s3(s3_server, s3_bucket):
    trial = CheckpointStore(f"s3://{s3_bucket}", storage_options=s3_server.storage_options).for_trial("s", 0)
    buffer = io.BytesIO()
    torch.save({"format_version": 1, "payload": uuid.UUID(int=1)}, buffer)  # not a tensor type
    _replace_with_manifest(trial, buffer.getvalue())
    loaded = trial.load_latest_valid()
    assert loaded.state is None and "cannot be read safely" in loaded.fallbacks[0]["problem"]


def test_a_truncated_checkpoint_falls_back_over_s3(s3_server, s3_bucket):
    trial = CheckpointStore(f"s3://{s3_bucket}/t", storage_options=s3_server.storage_options).for_trial("s", 0)
    trial.save(0, {"w": torch.zeros(2)})
    trial.save(1, {"w": torch.ones(2)})
    data = trial.fs.cat_file(trial.path(1))
    trial.fs.pipe_file(trial.path(1), data[: len(data) // 2])
    loaded = trial.load_latest_valid()
    assert loaded.epoch == 0 and torch.equal(loaded.state["w"], torch.zeros(2))
    assert "the manifest says" in loaded.fallbacks[0]["problem"]


def _replace_with_manifest(trial, data: bytes) -> None:
    """Write `data` as epoch 0's checkpoint with a matching manifest entry, as a writer would."""
    trial.save(0, {"w": torch.zeros(1)})
    trial.fs.pipe_file(trial.path(0), data)
    manifest = json.loads(trial.fs.cat_file(trial.manifest_path))
    list_as_written(manifest["checkpoints"][0], data)
    trial.fs.pipe_file(trial.manifest_path, json.dumps(manifest).encode())


def test_a_missing_bucket_is_a_configuration_error_that_names_it(s3_server):
    options = {**s3_server.storage_options, "secret": "do-not-print-me", "skip_instance_cache": True}
    store = CheckpointStore("s3://no-such-bucket-here/prefix", storage_options=options)
    with pytest.raises(ConfigurationError, match="'no-such-bucket-here'.*does not exist") as error:
        store.verify()
    assert "do-not-print-me" not in str(error.value)


def test_an_unreachable_endpoint_is_a_configuration_error(s3_bucket):
    options = {"key": "k", "secret": "do-not-print-me", "endpoint_url": "http://127.0.0.1:9",
               "skip_instance_cache": True, "config_kwargs": {"retries": {"max_attempts": 1}}}
    store = CheckpointStore(f"s3://{s3_bucket}/x", storage_options=options)
    with pytest.raises(ConfigurationError, match="Cannot reach the checkpoint location") as error:
        store.verify()
    assert "do-not-print-me" not in str(error.value)


def test_the_flow_takes_credentials_from_a_saved_block(prefect_server, s3_server, s3_bucket):
    name = f"s3-{uuid.uuid4().hex[:8]}"
    CheckpointStorageCredentials(
        aws_access_key_id=s3_server.storage_options["key"],
        aws_secret_access_key=s3_server.storage_options["secret"],
        endpoint_url=s3_server.endpoint_url,
    ).save(name)
    store = open_checkpoint_store(f"s3://{s3_bucket}/via-block", keep_last=1, credentials_block=name)
    store.for_trial("s", 1).save(0, {"w": torch.zeros(1)})
    assert _objects(s3_server, f"{s3_bucket}/via-block") == [
        f"{s3_bucket}/via-block/s/trial-00001/epoch-00000.pt",
        f"{s3_bucket}/via-block/s/trial-00001/manifest.json",
    ]


def test_an_unknown_credentials_block_is_a_configuration_error(prefect_server, s3_bucket):
    with pytest.raises(ConfigurationError, match="No CheckpointStorageCredentials block named 'nope'"):
        open_checkpoint_store(f"s3://{s3_bucket}/x", keep_last=1, credentials_block="nope")
