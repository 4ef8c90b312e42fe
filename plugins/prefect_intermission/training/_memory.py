"""Giving a stopped trial's memory back: to the process, and the GPU's to the device."""

from __future__ import annotations

import gc

import torch


def torch_uses_cuda() -> bool:
    """Whether this process has started CUDA (checked without starting it)."""
    return torch.cuda.is_available() and torch.cuda.is_initialized()


def release_memory(*, collect: bool = True) -> None:
    """Free what nothing refers to any more and return PyTorch's cached GPU blocks.

    `collect` runs a full garbage collection first, for objects kept alive only by
    reference cycles (Lightning's and Hugging Face's trainers have many): a fraction of
    a second with PyTorch and Prefect loaded, so it is left out where the process is
    about to end anyway and nothing else waits for the memory.
    """
    if collect:
        gc.collect()
    if torch_uses_cuda():
        torch.cuda.empty_cache()
