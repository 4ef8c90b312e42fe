"""The Prefect block types of this collection, and nothing heavier.

The `prefect.collections` entry point loads this module, so a Prefect server, a
worker or `intermission --help` registers the blocks without importing PyTorch,
Optuna or the flows.
"""

from prefect_intermission.blocks.credentials import CheckpointStorageCredentials
from prefect_intermission.blocks.pause_policy import PausePolicy

__all__ = ["CheckpointStorageCredentials", "PausePolicy"]
