"""Entrypoints of the control deployments: pause a study, stop it early (Stop & Save), resume
paused studies (nightly), abandon studies paused for too long (hourly)."""

from prefect_intermission.flows.control import (
    abandon_expired_pauses_flow,
    pause_study,
    resume_paused_studies,
    stop_study_flow,
)

__all__ = ["abandon_expired_pauses_flow", "pause_study", "resume_paused_studies", "stop_study_flow"]
