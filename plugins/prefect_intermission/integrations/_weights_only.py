"""Refuse, when it is written, a checkpoint that `torch.load(weights_only=True)` would not read back.

Trial checkpoints are only ever loaded with `weights_only=True`; a checkpoint holding
another type (a `pathlib.Path` among a model's hyperparameters, a NumPy scalar) would be
skipped as unreadable at the resume, and the trial would train again from the start.
Checked by walking the checkpoint's containers, without serializing it.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from typing import Any

import torch

from prefect_intermission.errors import CheckpointError

_PLAIN = (str, bytes, bytearray, int, float, complex, bool, type(None), torch.dtype, torch.device, torch.Size)
_MAPPINGS = (dict, OrderedDict, Counter)
_SEQUENCES = (list, tuple, set)


def refuse_unsafe(checkpoint: dict[str, Any], path: str) -> None:
    """Refuse a checkpoint that `torch.load(weights_only=True)` would not read back.

    Raises:
        CheckpointError: It holds another type (hyperparameters are the usual place).
    """
    safe = {g[0] if isinstance(g, tuple) else g for g in torch.serialization.get_safe_globals()}
    found = _first_unsafe(checkpoint, "", safe)
    if found is not None:
        where, kind = found
        raise CheckpointError(
            f"Trial checkpoint {path!r} would hold {kind} at {where!r}, which loads only with "
            "weights_only=False. Keep hyperparameters (save_hyperparameters) and checkpointed state to "
            "numbers, strings, lists, dicts and tensors, or register the type with "
            "torch.serialization.add_safe_globals([...])."
        )


def _first_unsafe(value: Any, where: str, safe: set[Any]) -> tuple[str, str] | None:
    """The first value under `value` (its place and type) that weights_only cannot load."""
    kind = type(value)
    if isinstance(value, torch.Tensor) or kind in _PLAIN or kind in safe:
        return None
    if kind in _MAPPINGS:
        for key, item in value.items():
            found = _first_unsafe(key, where, safe) or _first_unsafe(item, f"{where}.{key}".lstrip("."), safe)
            if found:
                return found
        return None
    if kind in _SEQUENCES:
        for i, item in enumerate(value):
            if found := _first_unsafe(item, f"{where}[{i}]", safe):
                return found
        return None
    return where, f"a {kind.__module__}.{kind.__qualname__}"
