"""The Prefect flows.

- `study`: `optimize_study` validates its parameters and sets the study up;
  `study_run.StudyRun` runs it, one method per phase; `suspension` carries a pause out, `pause_summary` says
  what paused and how to resume it.
- `trial`: one trial per flow run, for studies with a `trial_deployment`.
- `control`: pause a study, resume paused ones at night, abandon old pauses.
"""
