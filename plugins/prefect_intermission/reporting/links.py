"""Links into the Prefect UI, for logs, messages, summaries and `intermission status`."""

from __future__ import annotations

from prefect.settings import PREFECT_UI_URL


def flow_run_url(flow_run_id: object) -> str | None:
    """The flow run's page in the Prefect UI, or None when no UI URL is configured."""
    ui = PREFECT_UI_URL.value()
    return f"{ui.rstrip('/')}/runs/flow-run/{flow_run_id}" if ui else None


def flow_run_link(flow_run_id: object) -> str:
    """`" (<url>)"` to append to a sentence about the flow run, or `""` without a UI URL."""
    url = flow_run_url(flow_run_id)
    return f" ({url})" if url else ""
