"""Deleting the pause file resumes the suspended study that it paused.

A study run from a script waits in its process for its pause file to be deleted. A
deployment run cannot: it is suspended and its machine is free. `resume_deleted_pause_files`
is that wait for deployment runs: each suspended study whose last pause was made by its
policy's `pause_file`, and whose file is gone, is resumed. It runs from the
`resume-deleted-pause-files` control deployment (every 5 minutes), so the file must be
visible where that deployment runs: the same machine, or a shared folder, at an absolute path.
"""

from __future__ import annotations

import logging
import os

import optuna
from prefect.client.schemas.objects import FlowRun

from prefect_intermission.blocks.pause_policy import PausePolicy
from prefect_intermission.control.run_control import request_resume
from prefect_intermission.errors import FlowRunControlError, IntermissionError
from prefect_intermission.pausing.reasons import PauseReason
from prefect_intermission.pausing.run_states import FLOW_PAUSE_KEY_PREFIX
from prefect_intermission.study.flow_runs import study_config_of
from prefect_intermission.study.state import (
    missing_sqlite_file,
    open_storage,
    pause_history,
)

logger = logging.getLogger(__name__)


def resume_deleted_pause_files(runs: list[FlowRun]) -> list[str]:
    """Resume each suspended study in `runs` that its pause file paused and whose file is gone;
    return their names."""
    resumed = []
    for run in runs:
        try:
            path = _deleted_pause_file(run)
            if path is None:
                continue
            request_resume(run.id)
        except FlowRunControlError as e:  # resumed meanwhile by someone else: fine
            logger.info("Not resuming %s: %s", run.name, e)
            continue
        except Exception:  # one study that cannot be read must not keep the others paused
            logger.warning("Could not check the pause file of flow run %s; it stays paused.", run.id, exc_info=True)
            continue
        logger.info("Pause file %s deleted: study %r resumes (flow run %s).", path, run.name, run.id)
        resumed.append(run.name)
    return resumed


def _deleted_pause_file(run: FlowRun) -> str | None:
    """The pause file of a suspended study that it paused and that is gone now, else None."""
    key = (run.state.state_details.pause_key or "") if run.state is not None else ""
    if run.state is None or not run.state.is_paused() or not key.startswith(FLOW_PAUSE_KEY_PREFIX):
        return None  # not suspended, or still pausing
    config = study_config_of(run)
    if not config.pausing.pause_policy:
        return None
    path = PausePolicy.load(config.pausing.pause_policy).pause_file
    if not path or os.path.exists(path):
        return None
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        logger.warning(
            "The folder of study %r's pause file %s is not on this machine, so whether the file "
            "was deleted cannot be told; it stays paused. Run this check where the file is visible "
            "(its machine, or a shared folder).", config.study_name, path,
        )
        return None
    if missing_sqlite_file(config.execution.storage):
        raise IntermissionError(f"The storage of study {config.study_name!r} is not on this machine.")
    study = optuna.load_study(study_name=config.study_name, storage=open_storage(config.execution.storage))
    pauses = pause_history(study)
    last = pauses[-1] if pauses else None
    if last is None or last["reason"] != PauseReason.FILE or last["flow_run_id"] != str(run.id):
        return None  # paused by something else since: deleting the file does not resume it
    return path
