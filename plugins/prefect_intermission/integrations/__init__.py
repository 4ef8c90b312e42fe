"""Training frameworks an objective can train with, instead of a loop written by hand.

Each integration sits behind an optional extra and is imported only when an objective
uses it; `import prefect_intermission` imports none of them:

- `lightning`: PyTorch Lightning's `Trainer` (`pip install 'prefect-intermission[lightning]'`).
- `transformers`: `IntermissionCallback`, for the Hugging Face `Trainer`, PEFT models included
  (`pip install 'prefect-intermission[transformers]'`).

Every integration builds on `TrialContext` (`loop.context`): it reports to Optuna,
honours the pruner, pauses at the trainer's own boundaries and checkpoints through
the trial's verified checkpoint store. Like the training loop, none imports Prefect.
"""
