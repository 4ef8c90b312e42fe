"""The logger to use: Prefect's run logger inside a flow or task (its lines show in the UI)."""

from __future__ import annotations

import logging

from prefect.exceptions import MissingContextError
from prefect.logging import get_run_logger


def run_logger(fallback: str) -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    """The run logger in a flow or task run, else the plain logger named `fallback`."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger(fallback)
