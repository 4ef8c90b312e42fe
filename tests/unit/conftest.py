"""The unit tier runs without a Prefect server: a test that reaches for one fails at once."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_ALLOW_EPHEMERAL_MODE, temporary_settings


@pytest.fixture(autouse=True)
def no_prefect_server() -> Iterator[None]:
    """No API URL, even where an integration test of the same process set one, and no
    temporary server started instead: a Prefect API call raises "No Prefect API URL provided"."""
    with temporary_settings(updates={PREFECT_SERVER_ALLOW_EPHEMERAL_MODE: False}, restore_defaults={PREFECT_API_URL}):
        yield
