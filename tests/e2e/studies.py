"""Reading what a study run did: Optuna's record, checkpoints, and the run's log lines."""

from __future__ import annotations

import logging
import os
import re
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from uuid import UUID
from zoneinfo import ZoneInfo

import optuna
import torch
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from prefect.client.schemas.objects import Log
from prefect.client.schemas.sorting import LogSort

from prefect_intermission import CheckpointStore, TrialLoop

_EPOCH_LINE = re.compile(r"Trial (\d+) finished epoch (\d+) of ")  # counted from 1

#: The local time zone the tests run `intermission` in (its TZ): not UTC, so a time shown in
#: UTC instead of local time is caught.
LOCAL_ZONE = "America/New_York"


def read_in(zone: str, moment: datetime | str) -> str:
    """How a person in time zone `zone` reads `moment`: `2026-12-07 15:30:05 EST` (rendered here
    with zoneinfo, independently of the package's own rendering it checks)."""
    when = datetime.fromisoformat(moment) if isinstance(moment, str) else moment
    return when.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M:%S %Z")


def countdown(trial: optuna.Trial, loop: TrialLoop) -> float:
    """An objective whose metrics are known in advance: epoch e of trial n reports
    `10 * (n + 1) - e`, after `INTERMISSION_TEST_EPOCH_SECONDS` (default 0) of sleep."""
    lr = trial.suggest_float("lr", 1e-3, 0.1, log=True)
    model = torch.nn.Linear(1, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    seconds = float(os.environ.get("INTERMISSION_TEST_EPOCH_SECONDS", "0"))
    for epoch in loop.epochs(model, optimizer):
        time.sleep(seconds)
        loop.end_epoch(float(10 * (trial.number + 1) - epoch))
    return loop.best_metric


def trials(storage: str, study_name: str) -> list[optuna.trial.FrozenTrial]:
    """The study's trials, by number."""
    return optuna.load_study(study_name=study_name, storage=storage).get_trials()


def last_epoch(trial: optuna.trial.FrozenTrial) -> int | None:
    """The last epoch a trial reported; None for one stopped before its first."""
    return max(trial.intermediate_values, default=None)


def paused_line(trial: optuna.trial.FrozenTrial, max_epochs: int) -> str:
    """How a pause summary or notification lists a paused trial."""
    epoch = last_epoch(trial)
    return f"#{trial.number} not started" if epoch is None else f"#{trial.number} paused: {epoch + 1} of {max_epochs} epochs done"


def final_weights(checkpoints: str, study_name: str, number: int) -> dict[str, torch.Tensor]:
    """The model weights in a trial's latest checkpoint."""
    state = CheckpointStore(checkpoints).for_trial(study_name, number).load_latest_valid().state
    assert state is not None, f"trial {number} has no checkpoint"
    return state["components"]["model"]


def trained_epochs(flow_run_id: UUID, *, at_least: int = 0, timeout: float = 30) -> Counter[tuple[int, int]]:
    """How many times each (trial, epoch) was trained, from the run's log lines in the API.

    A run can be Completed before its process has sent its last log lines: with
    `at_least`, wait up to `timeout` seconds for that many epoch lines to arrive.
    """
    deadline = time.monotonic() + timeout
    while True:
        counts = _epoch_lines(flow_run_id)
        if sum(counts.values()) >= at_least:
            return counts
        assert time.monotonic() < deadline, (
            f"only {sum(counts.values())} of {at_least} epoch log lines of flow run {flow_run_id} arrived"
        )
        time.sleep(1)


def _epoch_lines(flow_run_id: UUID) -> Counter[tuple[int, int]]:
    counts: Counter[tuple[int, int]] = Counter()
    for message in _log_messages(flow_run_id):
        if match := _EPOCH_LINE.search(message):
            counts[(int(match.group(1)), int(match.group(2)) - 1)] += 1  # as Optuna numbers its steps
    return counts


def run_logs(flow_run_id: UUID) -> str:
    """Every log line a flow run sent to the Prefect API so far, oldest first."""
    return "\n".join(_log_messages(flow_run_id))


def error_logs(flow_run_id: UUID) -> list[str]:
    """The log lines of a flow run sent at ERROR or above (red on the run's page)."""
    return [log.message for log in _logs(flow_run_id) if log.level >= logging.ERROR]


def _log_messages(flow_run_id: UUID) -> Iterator[str]:
    return (log.message for log in _logs(flow_run_id))


def _logs(flow_run_id: UUID) -> Iterator[Log]:
    with get_client(sync_client=True) as client:
        offset = 0
        while True:
            page = client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])),
                limit=200, offset=offset, sort=LogSort.TIMESTAMP_ASC,
            )
            yield from page
            if len(page) < 200:
                return
            offset += 200


def artifacts_of(flow_run_id: UUID) -> dict[str, object]:
    """The latest artifact of each key on a flow run, from the Prefect API, keyed by key."""
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
    from prefect.client.schemas.sorting import ArtifactSort

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])),
            sort=ArtifactSort.CREATED_DESC,
        )
    latest: dict[str, object] = {}
    for artifact in artifacts:
        latest.setdefault(artifact.key, artifact)
    return latest


def study_events(study_name: str) -> list[dict]:
    """The `intermission.*` events about a study, oldest first, from the server's events API."""
    import httpx
    from prefect.settings import PREFECT_API_URL

    response = httpx.post(
        f"{PREFECT_API_URL.value()}/events/filter",
        json={
            "filter": {
                "event": {"prefix": ["intermission."]},
                "resource": {"id": [f"intermission.study.{study_name}"]},
                "order": "ASC",
            },
            "limit": 50,
        },
        timeout=30,
    )
    response.raise_for_status()
    return response.json()["events"]
