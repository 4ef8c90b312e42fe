"""Entrypoints of the control deployments: pause a study, resume paused studies (nightly)."""

from prefect_intermission.control_flows import pause_study, resume_paused_studies

__all__ = ["pause_study", "resume_paused_studies"]
