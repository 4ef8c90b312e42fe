"""Pause and Resume clicked in both Prefect UIs (headless Chromium), as a user does: whatever
timeout was typed in the pause dialog, the paused study shows as paused, keeps Resume, and a
click on Resume runs it again at once."""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from optuna.trial import TrialState
from prefect_intermission.control.timed_resume import pending_resume

from deployments.ui_actions import (
    read_run,
    start_deployment_run,
    wait_for_state,
    wait_until_mid_training,
    wait_until_paused_by_study,
)
from tests.e2e.browser import RunPage, chromium
from tests.e2e.studies import trained_epochs, trials

N_TRIALS = 2
MAX_EPOCHS = 6
DEFAULT_DIALOG_TIMEOUT = 300  # what both dialogs hold until the user types another number
#: From the click on Resume to the run Running again: the worker's 1 s poll and 2 s
#: prefetch in this stack, plus a flow process's start on a loaded 2-core machine.
RESUME_ALLOWANCE_SECONDS = 60


@pytest.mark.parametrize(
    ("ui", "typed_timeout"),
    [("v2", 900), ("v2", None), ("v1", 900), ("v1", None)],
    ids=["default-ui-900s", "default-ui-default-timeout", "older-ui-900s", "older-ui-default-timeout"],
)
def test_a_ui_pause_keeps_resume_whatever_the_timeout(prefect_stack, tmp_path, ui, typed_timeout):
    name = f"ui-{ui}-{uuid.uuid4().hex[:6]}"
    storage = f"sqlite:///{tmp_path}/studies.db"
    run = start_deployment_run(
        "pausable-study/digits-demo",
        {
            "study_name": name, "storage": storage, "checkpoints": str(tmp_path / "checkpoints"),
            "n_trials": N_TRIALS, "max_epochs": MAX_EPOCHS, "max_concurrent_trials": 1, "seed": 3,
        },
    )
    wait_until_mid_training(storage, name, min_epochs=2)
    with chromium() as browser:
        page = RunPage(browser, prefect_stack.env["PREFECT_UI_URL"], run.id, ui).open()
        clicked = datetime.now(timezone.utc)
        page.pause(typed_timeout)

        suspended = wait_until_paused_by_study(run.id)
        # The dialog's promise is kept by a scheduled resume, not by the run's own state.
        due = pending_resume(suspended).at
        promised = clicked + timedelta(seconds=typed_timeout or DEFAULT_DIALOG_TIMEOUT)
        assert abs((due - promised).total_seconds()) < 10, (due, promised)

        page.open()
        assert page.state_badge() == "Suspended"
        assert page.resume_offered()
        # While paused, its pause summary and trials are there to read.
        assert page.tab_shows("Artifacts", f"{name}-pause")
        page.screenshot(f"paused-{ui}-{typed_timeout or 'default'}-artifacts")
        assert page.tab_shows("Task Runs", "trial-0")
        page.screenshot(f"paused-{ui}-{typed_timeout or 'default'}")

        started = time.monotonic()
        page.resume()
        wait_for_state(run.id, "Running", "Completed", timeout=RESUME_ALLOWANCE_SECONDS)
        resumed_after = time.monotonic() - started
        assert datetime.now(timezone.utc) < due, "resumed by the click, not by the timeout"

    wait_for_state(run.id, "Completed", timeout=300)
    assert read_run(run.id).run_count == 2, "one execution before the pause, one after the click"
    got = trials(storage, name)
    assert [t.number for t in got] == list(range(N_TRIALS))
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in got)
    counts = trained_epochs(run.id, at_least=sum(len(t.intermediate_values) for t in got) - N_TRIALS)
    assert max(counts.values()) == 1, {k: v for k, v in counts.items() if v > 1}
    assert pending_resume(read_run(run.id)) is None
    print(f"{ui}: Resume clicked -> Running in {resumed_after:.1f} s")
