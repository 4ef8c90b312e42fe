"""A trainer's checkpoint folder as checkpoint state, and back: what the verified store keeps.

The Hugging Face `Trainer` writes a checkpoint as a folder (`checkpoint-N/`: weights, optimizer,
scheduler, RNG states, `trainer_state.json`). The trial's store keeps one file per checkpoint,
loaded with `torch.load(weights_only=True)`, so the folder travels inside it as plain data:

- each file as a uint8 tensor of its bytes, under `files` (keyed by its path in the folder);
- the weights file (`model.safetensors`, or a PEFT model's `adapter_model.safetensors`) as its
  tensors under `components["model"]`, where `intermission best` finds a trial's weights, and
  written back as safetensors with the same header metadata.

`training_args.bin` is left out: it is a pickle of the arguments, and resuming never reads it.
Nothing here imports Transformers.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
from pathlib import Path, PurePosixPath
from typing import Any

import torch

from prefect_intermission.errors import CheckpointError

#: What a checkpoint written by the Transformers `IntermissionCallback` says it is (`trainer` in its state).
CHECKPOINT_KIND = "transformers.Trainer/1"
#: Weights files kept as tensors (the first found); any other file is kept as bytes.
WEIGHTS_FILES = ("model.safetensors", "adapter_model.safetensors")
#: Files a resume does not read and that are not plain data.
LEFT_OUT = frozenset({"training_args.bin"})


def pack_folder(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """The files of `folder` (recursively) as `{"files", "components", "weights"}`."""
    root = Path(folder)
    files: dict[str, torch.Tensor] = {}
    components: dict[str, Any] = {}
    weights: dict[str, Any] | None = None
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        name = path.relative_to(root).as_posix()
        if name in LEFT_OUT:
            continue
        data = path.read_bytes()
        if weights is None and name in WEIGHTS_FILES:
            from safetensors.torch import load as load_safetensors  # the transformers extra; `best` of others needs none

            components["model"] = load_safetensors(data)
            weights = {"file": name, "metadata": _safetensors_metadata(data)}
        else:
            files[name] = _as_tensor(data)
    return {"files": files, "components": components, "weights": weights}


def packed_files(state: dict[str, Any]) -> dict[str, bytes]:
    """The files packed in `state`, each as its bytes, by its path in the folder.

    Raises:
        CheckpointError: A packed file would land outside its folder.
    """
    contents = {name: tensor.numpy().tobytes() for name, tensor in state["files"].items()}
    weights = state.get("weights")
    if weights is not None:
        model, metadata = state["components"]["model"], weights["metadata"]
        from safetensors.torch import save as save_safetensors

        contents[weights["file"]] = save_safetensors(model, metadata=metadata)
    for name in contents:
        relative = PurePosixPath(name)
        if relative.is_absolute() or ".." in relative.parts:
            raise CheckpointError(f"The checkpoint names a file outside its folder: {name!r}.")
    return contents


def write_files(contents: dict[str, bytes], folder: str | os.PathLike[str]) -> Path:
    """Write `contents` (bytes by path, as `packed_files` gives them) into the new `folder`."""
    root = Path(folder)
    root.mkdir(parents=True)
    for name, data in contents.items():
        target = root.joinpath(*PurePosixPath(name).parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return root


def unpack_folder(state: dict[str, Any], folder: str | os.PathLike[str]) -> Path:
    """Write the files packed in `state` into `folder`, replacing whatever it held; the folder.

    Raises:
        CheckpointError: A packed file would land outside `folder`; nothing was restored.
    """
    try:
        contents = packed_files(state)
    except CheckpointError as e:
        raise CheckpointError(f"{e} Nothing was restored.") from e
    root = Path(folder)
    if root.exists():
        shutil.rmtree(root)
    return write_files(contents, root)


def _as_tensor(data: bytes) -> torch.Tensor:
    """The bytes as a uint8 tensor (`torch.frombuffer` refuses an empty buffer)."""
    return torch.frombuffer(bytearray(data), dtype=torch.uint8) if data else torch.empty(0, dtype=torch.uint8)


def _safetensors_metadata(data: bytes) -> dict[str, str] | None:
    """The `__metadata__` of a safetensors file's header (e.g. `{"format": "pt"}`), or None."""
    (length,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + length]).get("__metadata__")
