"""Prefect events for automations: a study or a trial paused, resumed or completed.

Event names are `intermission.study.<what>` and `intermission.trial.<what>`; the study is
the resource (`intermission.study.<study name>`), the flow run and trial are related.
"""

from __future__ import annotations

import logging
from typing import Any
from uuid import UUID

from prefect.events import emit_event

logger = logging.getLogger(__name__)


def study_resource(study_name: str) -> dict[str, str]:
    """The resource an event about a study is about."""
    return {"prefect.resource.id": f"intermission.study.{study_name}", "prefect.resource.name": study_name}


def emit_study_event(
    what: str, study_name: str, flow_run_id: UUID, payload: dict[str, Any] | None = None
) -> None:
    """Emit `intermission.study.<what>` (paused, resumed, completed)."""
    _emit(f"intermission.study.{what}", study_name, flow_run_id, None, payload)


def emit_trial_event(
    what: str, study_name: str, flow_run_id: UUID, number: int, payload: dict[str, Any] | None = None
) -> None:
    """Emit `intermission.trial.<what>` (paused, resumed, complete, pruned, failed: the trial's outcome)."""
    _emit(f"intermission.trial.{what}", study_name, flow_run_id, number, payload)


def _emit(
    event: str, study_name: str, flow_run_id: UUID, number: int | None, payload: dict[str, Any] | None
) -> None:
    related = [{"prefect.resource.id": f"prefect.flow-run.{flow_run_id}", "prefect.resource.role": "flow-run"}]
    if number is not None:
        related.append(
            {
                "prefect.resource.id": f"intermission.trial.{study_name}.{number}",
                "prefect.resource.role": "trial",
                "prefect.resource.name": f"trial {number}",
            }
        )
    try:
        emit_event(event=event, resource=study_resource(study_name), related=related, payload=payload or {})
    except Exception:  # events are for automations; they must never stop a study
        logger.warning("Could not emit event %s.", event, exc_info=True)
