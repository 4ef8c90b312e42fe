"""Credentials for a checkpoint location in an object store, kept in a Prefect block.

A study's flow parameters are shown in plain text in the Prefect UI and its logs, so
credentials never travel in them: the `checkpoint_credentials` parameter names a
saved `CheckpointStorageCredentials` block, and the flow loads it on the worker.
Without a block, s3fs reads the usual AWS environment (`AWS_ACCESS_KEY_ID`,
`AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_ENDPOINT_URL`, `AWS_PROFILE`, ...)
of the worker's process.
"""

from __future__ import annotations

from typing import Any

from prefect.blocks.core import Block
from pydantic import ConfigDict, Field, SecretStr

from prefect_intermission.blocks._schema import closed_block_schema


class CheckpointStorageCredentials(Block):
    """Access to an S3 (or S3-protocol) bucket that holds trial checkpoints.

    Every field is optional: what is left empty comes from the worker's AWS
    environment, as with any AWS client.

    Args:
        aws_access_key_id: The access key ID.
        aws_secret_access_key: The secret access key.
        aws_session_token: A session token, for temporary credentials.
        endpoint_url: The S3 endpoint, for S3-protocol stores other than AWS (MinIO, Ceph...).
        region_name: The bucket's AWS region.

    Example:
        Save the credentials once (from a trusted machine, or the UI's Blocks page):
        ```python
        from prefect_intermission import CheckpointStorageCredentials

        CheckpointStorageCredentials(
            aws_access_key_id="AKIA...", aws_secret_access_key="...", region_name="eu-west-1"
        ).save("BLOCK_NAME")
        ```
        then run the study flow with `checkpoints="s3://bucket/prefix"` and
        `checkpoint_credentials="BLOCK_NAME"`; the flow loads them on the worker:
        ```python
        from prefect_intermission import CheckpointStorageCredentials

        credentials = CheckpointStorageCredentials.load("BLOCK_NAME")
        ```
    """

    model_config = ConfigDict(json_schema_extra=closed_block_schema)  # a picker's choice validates

    _block_type_name = "Checkpoint Storage Credentials"
    _block_type_slug = "checkpoint-storage-credentials"
    _description = "Credentials and endpoint of the S3 bucket that holds prefect-intermission checkpoints."
    _documentation_url = "https://github.com/prefect-intermission/prefect-intermission#checkpoints-in-s3"

    aws_access_key_id: str | None = Field(
        default=None, description="The AWS access key ID; empty to use the worker's AWS environment."
    )
    aws_secret_access_key: SecretStr | None = Field(
        default=None, description="The AWS secret access key; empty to use the worker's AWS environment."
    )
    aws_session_token: SecretStr | None = Field(
        default=None, description="A session token for temporary credentials, if any."
    )
    endpoint_url: str | None = Field(
        default=None,
        description="The S3 endpoint URL, for S3-protocol stores other than AWS; empty for AWS itself.",
    )
    region_name: str | None = Field(default=None, description="The AWS region of the bucket, if needed.")

    def storage_options(self) -> dict[str, Any]:
        """The fsspec (s3fs) options these credentials stand for; only fields that are set."""
        options: dict[str, Any] = {}
        if self.aws_access_key_id:
            options["key"] = self.aws_access_key_id
        if self.aws_secret_access_key is not None:
            options["secret"] = self.aws_secret_access_key.get_secret_value()
        if self.aws_session_token is not None:
            options["token"] = self.aws_session_token.get_secret_value()
        if self.endpoint_url:
            options["endpoint_url"] = self.endpoint_url
        if self.region_name:
            options["client_kwargs"] = {"region_name": self.region_name}
        return options
