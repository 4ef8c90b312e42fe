"""Pausing one trial while the others go on: `intermission pause RUN --trial N`."""

from __future__ import annotations

import subprocess
import sys
import uuid

from optuna.trial import TrialState

from deployments.ui_actions import read_run, start_deployment_run, wait_for, wait_for_state
from prefect_intermission import request_resume
from prefect_intermission.pausing.run_states import FLOW_PAUSE_KEY_PREFIX
from prefect_intermission.study.state import TRIAL_STATUS_ATTR, pause_history
from tests.e2e.studies import trained_epochs, trials


def _intermission(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "prefect_intermission.cli.commands", *args],
        env=env, capture_output=True, text=True, timeout=120,
    )


def _start(name, tmp_path, *, n_trials, max_epochs):
    storage = f"sqlite:///{tmp_path}/studies.db"
    run = start_deployment_run("pausable-study/digits-demo", {
        "study_name": name, "storage": storage, "checkpoints": str(tmp_path / "checkpoints"),
        "n_trials": n_trials, "max_epochs": max_epochs, "max_concurrent_trials": 2, "seed": 7,
        "objective": "tests.objectives:slow_classifier",  # epochs of at least 0.3 s, idle or loaded
    })
    return run, storage


def _two_trials_training(storage, name, min_epochs=1):
    def training():
        try:
            found = trials(storage, name)
        except KeyError:  # not created yet
            return None
        running = [t for t in found if t.state == TrialState.RUNNING
                   and len(t.intermediate_values) >= min_epochs]
        return sorted(t.number for t in running) if len(running) == 2 else None

    return wait_for(training, timeout=300, what="two trials to train at once")


def _trial(storage, name, number):
    return trials(storage, name)[number]


def _held_trial_paused(storage, name, number):
    def paused():
        t = _trial(storage, name, number)
        return t if t.system_attrs.get(TRIAL_STATUS_ATTR) == "paused" else None

    return wait_for(paused, timeout=120, what=f"trial {number} to pause on its own")


def test_one_trial_pauses_while_the_others_train_and_continues_when_released(prefect_stack, tmp_path):
    name = f"trial-pause-{uuid.uuid4().hex[:6]}"
    run, storage = _start(name, tmp_path, n_trials=3, max_epochs=40)
    held, other = _two_trials_training(storage, name)

    paused = _intermission("pause", str(run.id), "--trial", str(held), env=prefect_stack.env)
    assert paused.returncode == 0, paused.stderr
    assert f"intermission resume {run.id} --trial {held}" in paused.stdout
    stopped_after = len(_held_trial_paused(storage, name, held).intermediate_values)

    # The other trials go on training while the held one stays where it stopped.
    other_before = len(_trial(storage, name, other).intermediate_values)
    wait_for(
        lambda: len(_trial(storage, name, other).intermediate_values) >= other_before + 2
        or _trial(storage, name, other).state.is_finished(),
        timeout=180, what="the other trial to train on",
    )
    assert len(_trial(storage, name, held).intermediate_values) == stopped_after
    assert read_run(run.id).state.is_running()

    resumed = _intermission("resume", str(run.id), "--trial", str(held), env=prefect_stack.env)
    assert resumed.returncode == 0, resumed.stderr
    assert "continues from its checkpoint" in resumed.stdout

    assert wait_for_state(run.id, "Completed", "Failed", timeout=600).state.name == "Completed"
    done = trials(storage, name)
    assert [t.state.is_finished() for t in done] == [True] * 3
    assert pause_history(_study(storage, name)) == []  # the study itself never paused
    [resumption] = done[held].system_attrs["intermission:resumptions"]
    assert resumption["reason"] == "pause" and resumption["from_epoch"] == stopped_after - 1
    assert resumption["lost_epochs"] == []
    reported = sum(len(t.intermediate_values) for t in done)
    counts = trained_epochs(run.id, at_least=reported)
    assert max(counts.values()) == 1, "an epoch was trained twice"
    assert sum(counts.values()) == reported


def test_when_only_held_trials_are_left_the_study_pauses_and_resumes_them(prefect_stack, tmp_path):
    name = f"trial-hold-{uuid.uuid4().hex[:6]}"
    run, storage = _start(name, tmp_path, n_trials=2, max_epochs=30)
    held, other = _two_trials_training(storage, name)

    assert _intermission("pause", str(run.id), "--trial", str(held), env=prefect_stack.env).returncode == 0
    stopped_after = len(_held_trial_paused(storage, name, held).intermediate_values)

    def suspended_by_study():
        r = read_run(run.id)
        key = (r.state.state_details.pause_key or "") if r.state else ""
        return r if r.state.is_paused() and key.startswith(FLOW_PAUSE_KEY_PREFIX) else None

    wait_for(suspended_by_study, timeout=300, what="the study to pause once only the held trial was left")
    assert _trial(storage, name, other).state == TrialState.COMPLETE
    [pause] = pause_history(_study(storage, name))
    assert pause["reason"] == "trial" and pause["trials"] == {str(held): stopped_after - 1}

    unknown = _intermission("resume", str(run.id), "--trial", "99", env=prefect_stack.env)
    assert unknown.returncode == 1 and "Trial 99" in unknown.stderr and "does not exist" in unknown.stderr
    assert "Traceback" not in unknown.stderr

    request_resume(run.id)  # the held trial resumes with the study
    assert wait_for_state(run.id, "Completed", "Failed", timeout=300).state.name == "Completed"
    done = trials(storage, name)
    assert all(t.state == TrialState.COMPLETE for t in done)
    assert done[held].system_attrs["intermission:resumptions"][0]["from_epoch"] == stopped_after - 1
    assert max(trained_epochs(run.id).values()) == 1, "an epoch was trained twice"


def _study(storage, name):
    import optuna

    return optuna.load_study(study_name=name, storage=storage)
