"""The control flows: pause a study, stop it early (Stop & Save), resume one at its set time,
resume paused studies (nightly), abandon studies paused for too long (hourly), resume studies
whose pause file was deleted (every 5 minutes). For deployments registered with entry points
`flows/control.py:...`; prefect.yaml and `intermission deploy` use the package's
`prefect_intermission.flows.control:...`."""

from prefect_intermission.flows.control import (
    abandon_expired_pauses_flow,
    pause_study,
    resume_deleted_pause_files_flow,
    resume_paused_studies,
    resume_study,
    stop_study_flow,
)

__all__ = [
    "abandon_expired_pauses_flow",
    "pause_study",
    "resume_deleted_pause_files_flow",
    "resume_paused_studies",
    "resume_study",
    "stop_study_flow",
]
