"""End to end: in a terminal, `p` pauses a study run as a script and `q` quits after checkpointing;
running the same command again completes it with no epoch trained twice and none lost."""

from __future__ import annotations

import shlex
import subprocess
import uuid

import optuna
import pytest
from optuna.trial import TrialState
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

from deployments.local_stack import PROJECT_ROOT
from deployments.ui_actions import wait_until_mid_training
from prefect_intermission.pausing.keys import HINT
from prefect_intermission.study.state import pause_history
from tests.e2e.studies import trained_epochs, trials
from tests.e2e.terminal import Terminal, study_command

N_TRIALS, MAX_EPOCHS = 2, 12  # what run_study_script.py runs


def flow_runs_named(name: str) -> list:
    """The study's flow runs (a script run creates one per run), oldest first."""
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[name])))
    return sorted(runs, key=lambda r: r.created)


def check_continued_exactly(storage: str, name: str, *, max_retrained: int) -> None:
    """Every trial finished all its epochs over the runs; at most `max_retrained` epochs trained twice."""
    done = trials(storage, name)
    assert [t.number for t in done] == list(range(N_TRIALS))
    assert all(t.state == TrialState.COMPLETE for t in done), [t.state for t in done]
    assert all(sorted(t.intermediate_values) == list(range(MAX_EPOCHS)) for t in done)
    runs = flow_runs_named(name)
    assert len(runs) == 2
    first, second = (trained_epochs(run.id) for run in runs)
    assert first and second, "both runs trained"
    assert set(first) | set(second) == {(t, e) for t in range(N_TRIALS) for e in range(MAX_EPOCHS)}, "an epoch was lost"
    repeated = sorted(set(first) & set(second))
    assert len(repeated) <= max_retrained, f"epochs trained twice: {repeated}"


@pytest.mark.parametrize(("key", "said"), [(b"p", "p: pausing"), (b"q", "q: quitting after checkpointing")])
def test_a_key_pauses_a_script_run_and_the_same_command_continues_it(prefect_stack, tmp_path, key, said):
    name = f"key-{key.decode()}-{uuid.uuid4().hex[:6]}"
    storage = f"sqlite:///{tmp_path}/studies.db"
    command = study_command(tmp_path, name)
    terminal = Terminal(command, {**prefect_stack.env, "INTERMISSION_TEST_EPOCH_SECONDS": "0.5", "COLUMNS": "200"})
    try:
        terminal.wait_for_text(HINT, timeout=120)
        wait_until_mid_training(storage, name, min_epochs=2, timeout=120)
        terminal.type(key)
        code = terminal.wait(timeout=180)
    finally:
        terminal.close()

    screen = terminal.screen
    assert code == 0, screen[-3000:]
    assert said in screen
    assert "cannot be suspended" in screen and shlex.join(command) in screen
    (run,) = flow_runs_named(name)
    assert run.state.name == "Paused"
    assert pause_history(optuna.load_study(study_name=name, storage=storage))[-1]["reason"] == "key"
    paused = [t for t in trials(storage, name) if t.state == TrialState.RUNNING]
    assert paused and all(t.system_attrs["intermission:status"] == "paused" for t in paused)

    again = subprocess.run(command, env={**prefect_stack.env, "INTERMISSION_TEST_EPOCH_SECONDS": "0.05"},
                           cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert HINT not in again.stdout + again.stderr, "the hint is shown only in a terminal"
    check_continued_exactly(storage, name, max_retrained=0)


def test_without_a_terminal_keys_are_not_read(prefect_stack, tmp_path):
    """Piped input is left alone: a 'p' in it pauses nothing."""
    name = f"nokeys-{uuid.uuid4().hex[:6]}"
    done = subprocess.run(study_command(tmp_path, name), input="p\nq\n",
                          env={**prefect_stack.env, "INTERMISSION_TEST_EPOCH_SECONDS": "0.05"},
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert HINT not in done.stdout + done.stderr
    assert all(t.state == TrialState.COMPLETE for t in trials(f"sqlite:///{tmp_path}/studies.db", name))
