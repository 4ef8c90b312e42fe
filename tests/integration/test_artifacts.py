"""What a study's flow run shows in the Artifacts tab: a handful of cards, read back from the API.

One progress artifact per flow run, updated in place across its executions; the trials
table and the pause summary published only at a pause, at completion, or every few
minutes while training, never at every epoch.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from prefect.client.schemas.sorting import ArtifactSort
from prefect.flow_engine import run_flow
from prefect.states import Pending

from prefect_intermission.study.config import grouped_parameters
from prefect_intermission import optimize_study
from prefect_intermission.reporting.artifacts import ArtifactReporter, artifact_key
from prefect_intermission.reporting.progress import StudyProgress

pytestmark = pytest.mark.usefixtures("prefect_server")


def pause_at_first_epoch_of(trials: list[int]):
    """A pause rule: pause the study once at the first epoch of each of `trials`."""
    return lambda context: (
        f"rule: trial {context.trial_number} trained its first epoch"
        if context.trial_number in trials and context.epoch == 0 and context.earlier_best is None else None
    )


@flow
def _placeholder() -> None:
    """Only lends its name to the flow runs the reporter tests write artifacts to."""


def _artifacts(flow_run_id) -> list:
    """Every artifact of a flow run, newest first, from the Prefect API."""
    with get_client(sync_client=True) as client:
        return client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])),
            sort=ArtifactSort.CREATED_DESC,
        )


def _kinds(artifacts, study_name: str) -> Counter:
    kinds = {artifact_key(study_name, kind): kind for kind in ("progress", "trials", "pause")}
    return Counter(kinds.get(a.key, a.key) for a in artifacts)


def _latest_table(artifacts, study_name: str) -> list[dict]:
    table = next(a for a in artifacts if a.key == artifact_key(study_name, "trials"))
    return json.loads(table.data)


def test_a_study_paused_twice_and_resumed_shows_six_artifacts(tmp_path):
    """Three executions of one flow run (run again in this process, as a resumed run is
    executed again from the top): one progress bar, two pause summaries, three tables."""
    name = f"cards-{uuid.uuid4().hex[:6]}"
    parameters = grouped_parameters({
        "study_name": name, "objective": "tests.objectives:classifier", "n_trials": 3, "max_epochs": 3,
        "storage": f"sqlite:///{tmp_path}/s.db", "checkpoints": str(tmp_path / "ckpt"), "seed": 5,
        "max_concurrent_trials": 1,
        "pause_rules": [{"rule": "tests.integration.test_artifacts:pause_at_first_epoch_of", "trials": [0, 1]}],
    })
    with get_client(sync_client=True) as client:
        flow_run = client.create_flow_run(optimize_study, parameters=parameters, state=Pending())
    statuses = []
    for _ in range(3):
        statuses.append(run_flow(optimize_study, flow_run=flow_run, parameters=parameters)["status"])
        with get_client(sync_client=True) as client:  # what a resume does: the same run, again
            client.set_flow_run_state(flow_run.id, Pending(), force=True)
            flow_run = client.read_flow_run(flow_run.id)
    assert statuses == ["paused", "paused", "completed"]

    artifacts = _artifacts(flow_run.id)
    assert len(artifacts) <= 6, [(a.key, a.description) for a in artifacts]
    assert _kinds(artifacts, name) == {"progress": 1, "pause": 2, "trials": 3}
    [bar] = [a for a in artifacts if a.type == "progress"]
    assert float(bar.data) == 100.0
    assert bar.description == f"Finished trials of study {name!r} out of 3 (updated as trials finish)"

    # The latest table is complete: trial 0, finished two executions ago, is still listed.
    rows = _latest_table(artifacts, name)
    assert [r["trial"] for r in rows] == [0, 1, 2]
    assert all(r["state"] in ("complete", "pruned") for r in rows), rows
    tables = [a.description for a in artifacts if a.key == artifact_key(name, "trials")]
    assert tables[0].startswith(f"Trials of study {name!r} in this flow run, when the study completed, ")
    assert all(" at the pause of " in d and d.endswith(" UTC") for d in tables[1:]), tables
    pauses = [a.description for a in artifacts if a.key == artifact_key(name, "pause")]
    assert all(d.startswith(f"Why and where study {name!r} paused") for d in pauses), pauses
    # At the first pause only trial 0 was known, paused after its first epoch.
    first = json.loads(next(a for a in reversed(artifacts) if a.key == artifact_key(name, "trials")).data)
    assert [(r["trial"], r["state"], r["epoch"]) for r in first] == [(0, "paused", "1/3")]


def _train(progress: StudyProgress, number: int, epochs: int, *, seconds: float = 0.0, end: str = "complete") -> None:
    progress.trial_started(number, {"lr": 0.1}, -1, None)
    for epoch in range(epochs):
        time.sleep(seconds)
        progress.epoch_finished(number, epoch, float(10 - epoch), float(10 - epoch))
    progress.trial_ended(number, end)


def test_the_table_is_not_published_at_every_epoch():
    name = f"epochs-{uuid.uuid4().hex[:6]}"
    with get_client(sync_client=True) as client:
        run_id = client.create_flow_run(_placeholder, state=Pending()).id

    progress = StudyProgress(name, n_trials=3, max_epochs=20, finished=0)
    reporter = ArtifactReporter(run_id, progress, interval=0.05)
    with reporter:
        _train(progress, 0, 20, seconds=0.02, end="paused")
    assert _kinds(_artifacts(run_id), name) == {"progress": 1}  # paused: no table until the summary

    # As StudyRun does once the execution ends paused: the summary, with the table.
    reporter.publish_pause_summary("# paused")
    reporter.publish_pause_summary("# paused again, nothing trained since")
    assert _kinds(_artifacts(run_id), name) == {"progress": 1, "trials": 1, "pause": 2}

    # While training, the table follows the clock, not the epochs.
    progress = StudyProgress(name, n_trials=3, max_epochs=20, finished=0)
    started = time.monotonic()
    with ArtifactReporter(run_id, progress, interval=0.05, table_every=0.4):
        _train(progress, 1, 20, seconds=0.05, end="paused")
    elapsed = time.monotonic() - started
    tables = _kinds(_artifacts(run_id), name)["trials"] - 1
    assert 1 <= tables <= elapsed / 0.4 + 1, (tables, elapsed)

    # A new execution of the run finds its progress bar and completes the table it left.
    progress = StudyProgress(name, n_trials=3, max_epochs=20, finished=1)
    with ArtifactReporter(run_id, progress, interval=0.05):
        _train(progress, 1, 2)
        _train(progress, 2, 2)
    artifacts = _artifacts(run_id)
    assert _kinds(artifacts, name)["progress"] == 1
    assert float(next(a for a in artifacts if a.type == "progress").data) == 100.0
    assert [(r["trial"], r["state"]) for r in _latest_table(artifacts, name)] == [
        (0, "paused"), (1, "complete"), (2, "complete"),
    ]
