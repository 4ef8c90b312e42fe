"""Trainers from other libraries, made pausable through the trial's `TrialContext`.

Each integration sits behind an optional extra (`pip install prefect-intermission[transformers]`)
and is imported only when an objective uses it: `import prefect_intermission` never loads it.

- `transformers`: `IntermissionCallback`, for the Hugging Face `Trainer` (PEFT models included).
"""
