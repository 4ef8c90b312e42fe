"""Pause and resume one trial of a running study while its other trials go on."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from optuna.trial import TrialState
from prefect.client.schemas.objects import FlowRun

from prefect_intermission.control.run_control import read_flow_run
from prefect_intermission.errors import FlowRunControlError
from prefect_intermission.pausing.holds import TrialHolds
from prefect_intermission.study.flow_runs import study_config_of, study_name_of
from prefect_intermission.study.state import missing_sqlite_file, open_storage


@dataclass(frozen=True)
class TrialRequest:
    """What a trial pause or resume request reached."""

    flow_run: FlowRun
    study_name: str
    trial_number: int


def _study_holds(flow_run: FlowRun, trial_number: int) -> tuple[str, TrialHolds]:
    """The study of a run and its holds, once `trial_number` is known to be unfinished there."""
    study_name = study_name_of(flow_run)
    config = study_config_of(flow_run)
    if config.execution.trial_deployment:
        raise FlowRunControlError(
            f"Study {study_name!r} trains each trial as a flow run of its own "
            f"({config.execution.trial_deployment}); pausing one of those runs pauses the "
            f"whole study. --trial pauses one trial of a study that trains its trials in its own process."
        )
    url = config.execution.storage
    if (missing := missing_sqlite_file(url)) is not None:  # opening it would create an empty one
        raise FlowRunControlError(
            f"The storage of study {study_name!r} is a SQLite file that does not exist here "
            f"({missing}); run this command from the flow run's working directory."
        )
    storage = open_storage(url)
    try:
        study_id = storage.get_study_id_from_name(study_name)
    except KeyError as e:
        raise FlowRunControlError(
            f"Study {study_name!r} of flow run {flow_run.id} has no trials yet in its storage."
        ) from e
    trials = {t.number: t for t in storage.get_all_trials(study_id, deepcopy=False)}
    trial = trials.get(trial_number)
    if trial is None or trial.state != TrialState.RUNNING:
        unfinished = sorted(n for n, t in trials.items() if t.state == TrialState.RUNNING)
        described = "does not exist" if trial is None else f"is {trial.state.name.lower()}"
        raise FlowRunControlError(
            f"Trial {trial_number} of study {study_name!r} {described}; only an unfinished "
            f"trial can be paused or resumed on its own. Unfinished trials: "
            f"{', '.join(map(str, unfinished)) or 'none'}."
        )
    return study_name, TrialHolds(storage.engine, study_name)


def request_trial_pause(flow_run_id: UUID, trial_number: int) -> TrialRequest:
    """Pause one trial of a running study at its next epoch boundary; the others go on."""
    flow_run = read_flow_run(flow_run_id)
    if flow_run.state is None or not flow_run.state.is_running():
        raise FlowRunControlError(
            f"Flow run {flow_run_id} ({flow_run.name}) is "
            f"{flow_run.state.name if flow_run.state else 'new'}, not Running: a trial can be "
            "paused on its own only while its study runs."
        )
    study_name, holds = _study_holds(flow_run, trial_number)
    if not holds.hold(trial_number):
        raise FlowRunControlError(f"Trial {trial_number} of study {study_name!r} is already paused on its own.")
    return TrialRequest(flow_run, study_name, trial_number)


def request_trial_resume(flow_run_id: UUID, trial_number: int) -> TrialRequest:
    """Let a trial paused on its own continue: in its running study at once, or when the study resumes."""
    flow_run = read_flow_run(flow_run_id)
    study_name, holds = _study_holds(flow_run, trial_number)
    if not holds.release(trial_number):
        raise FlowRunControlError(
            f"Trial {trial_number} of study {study_name!r} is not paused on its own; to resume "
            f"the whole study use: intermission resume {flow_run_id}"
        )
    return TrialRequest(flow_run, study_name, trial_number)
