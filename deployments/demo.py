"""`make demo`: a pausable study, paused the way the Prefect UI pauses it, then resumed.

Starts a local Prefect server (SQLite under .intermission/demo), creates the work pool,
deploys prefect.yaml's `digits-demo` and `resume-study`, starts a process worker, runs a study, pauses it
mid-training, shows it suspended with its process gone, resumes it, waits for it to
complete, prints the best trial and shuts down what it started.
"""

from __future__ import annotations

import sys
import time
from datetime import datetime
from pathlib import Path

import optuna
from prefect.settings import PREFECT_API_URL, temporary_settings

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from prefect_intermission._times import shown_time  # noqa: E402
from prefect_intermission.control.timed_resume import pending_resume  # noqa: E402
from prefect_intermission.study.state import TRIAL_PAUSED_EPOCH_ATTR, TRIAL_STATUS_ATTR  # noqa: E402

from deployments.local_stack import PROJECT_ROOT, LocalPrefect  # noqa: E402
from deployments.ui_actions import (  # noqa: E402
    process_is_gone,
    start_deployment_run,
    ui_pause,
    wait_for,
    wait_for_state,
    wait_until_mid_training,
    wait_until_suspended_by_study,
)

STORAGE = f"sqlite:///{PROJECT_ROOT}/.intermission/studies.db"
DIALOG_TIMEOUT_SECONDS = 20  # what a user types in the pause dialog: "back in 20 seconds"


def say(message: str) -> None:
    print(f"\n==> {message}", flush=True)


def show_trials(study_name: str) -> None:
    study = optuna.load_study(study_name=study_name, storage=STORAGE)
    for t in study.get_trials(deepcopy=False):
        status = t.system_attrs.get(TRIAL_STATUS_ATTR, "")
        detail = (
            f"paused with {t.system_attrs.get(TRIAL_PAUSED_EPOCH_ATTR) + 1} epochs done"
            if status == "paused" and t.state.name == "RUNNING"
            else f"value {t.value:.4f}" if t.value is not None else ""
        )
        print(f"    trial {t.number}: {t.state.name:<8} epochs {len(t.intermediate_values):>2}  {detail}")


def main() -> None:
    study_name = f"digits-demo-{datetime.now():%Y%m%d-%H%M%S}"
    home = PROJECT_ROOT / ".intermission" / "demo-prefect"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    say(f"Starting a local Prefect server (PREFECT_HOME={home.relative_to(PROJECT_ROOT)})")
    with LocalPrefect(home) as prefect, temporary_settings({PREFECT_API_URL: prefect.api_url}):
        print(f"    UI: http://127.0.0.1:{prefect.port}")
        say("Creating the work pool and deploying prefect.yaml's digits-demo and resume-study")
        prefect.deploy("digits-demo", "resume-study")
        prefect.start_worker()
        say(f"Running study {study_name!r}: 6 trials, 2 at a time, 10 epochs each")
        run = start_deployment_run("pausable-study/digits-demo", {"study_name": study_name})
        print(f"    flow run {run.id}  ({prefect.env['PREFECT_UI_URL']}/runs/flow-run/{run.id})")
        wait_for_state(run.id, "Running", timeout=120)
        trials = wait_until_mid_training(STORAGE, study_name, min_epochs=2)
        say(f"Trials {trials} are mid-training: pausing the way the UI's Pause button does, "
            f"with {DIALOG_TIMEOUT_SECONDS} s typed in its dialog's Timeout field")
        ui_pause(run.id, timeout_seconds=DIALOG_TIMEOUT_SECONDS)
        started = time.monotonic()
        paused = wait_until_suspended_by_study(run.id)
        due = pending_resume(paused)
        print(f"    paused in {time.monotonic() - started:.1f} s; the run stays Suspended (Resume in the UI, or "
              f"`intermission resume {run.id}`, resumes it now) and resumes by itself at "
              f"{shown_time(due.at)}, when the dialog's timeout passes")
        wait_for(lambda: process_is_gone(paused), timeout=30, what="the flow's process to exit")
        print(f"    its process ({paused.infrastructure_pid}) has exited: the machine is free")
        say("The study is paused; its state in Optuna:")
        show_trials(study_name)
        say("Waiting for the run to resume by itself (a scheduled run of the resume-study deployment)")
        done = wait_for_state(run.id, "Completed", timeout=600)
        say(f"Flow run {done.state.name}; the study:")
        show_trials(study_name)
        best = optuna.load_study(study_name=study_name, storage=STORAGE).best_trial
        say(f"Best trial: #{best.number}, validation loss {best.value:.4f}, params {best.params}")
        say("Shutting down the worker and the server")


if __name__ == "__main__":
    main()
