"""Two executions of the same study started at once never train the same trial at the same time."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

from optuna.trial import TrialState
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

from deployments.local_stack import PROJECT_ROOT
from tests.e2e.studies import trained_epochs, trials

SCRIPT = Path(__file__).with_name("run_study_script.py")


def test_a_second_execution_waits_for_the_lease_and_never_trains_alongside(prefect_stack, tmp_path):
    study_name = f"twice-{uuid.uuid4().hex[:6]}"
    storage = f"sqlite:///{tmp_path}/studies.db"
    # The second waits 4 s for a live owner; the first trains for at least 12 s, so it is
    # still running when the second gives up, however the two start-ups interleave.
    env = {**prefect_stack.env, "INTERMISSION_LEASE_SECONDS": "2", "INTERMISSION_TEST_EPOCH_SECONDS": "1"}
    command = [sys.executable, str(SCRIPT), study_name, storage, str(tmp_path / "checkpoints")]
    first, second = (
        subprocess.Popen(command, env=env, cwd=PROJECT_ROOT, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    )
    outputs = [p.communicate(timeout=300) for p in (first, second)]
    codes = sorted([first.returncode, second.returncode])

    assert codes[0] == 0, outputs
    assert codes[1] != 0, "the second execution must not run the study alongside the first"
    refused = next(err for p, (_, err) in zip((first, second), outputs) if p.returncode != 0)
    assert "is being run by another execution" in refused
    assert "Wait for it to finish or pause it first" in refused

    done = trials(storage, study_name)
    assert [t.number for t in done] == [0, 1]
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in done)
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[study_name])))
    assert len(runs) == 2
    trained = [trained_epochs(run.id) for run in runs]
    assert sum(bool(t) for t in trained) == 1, "only one execution trained"
