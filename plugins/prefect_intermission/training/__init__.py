"""What runs inside an objective.

- `loop`: `TrialLoop`, the training loop, and what a checkpoint holds.
- `checkpoints`: which checkpoints a trial has and keeps (its manifest), verified.
- `store`: where they live (a folder or any fsspec URL); `_hashed_io`: how bytes are
  written and read while hashed; `_background`: how a checkpoint is copied aside and
  written in a thread of its own while the next epoch trains. `_rng`: every
  generator's state. `direction`: which metric is better. `pause_signal`: the
  `PauseSignal` every trial reads at its boundaries.

Nothing here imports Prefect: an objective can be run and tested without a server.
"""
