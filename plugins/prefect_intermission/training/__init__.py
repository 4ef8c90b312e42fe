"""What runs inside an objective: the training loop, its checkpoints and how their bytes are written, RNG state.

Nothing here imports Prefect: an objective can be run and tested without a server.
"""
