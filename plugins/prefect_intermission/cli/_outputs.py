"""Writing `intermission best`'s output, a file or a folder, never partial under its final name.

Each is written beside its final name (`.NAME.<random>.partial`) and then renamed: a failure
or an interruption leaves nothing under the name the user gave.
"""

from __future__ import annotations

import os
import shutil
import uuid

import torch

from prefect_intermission.errors import ConfigurationError
from prefect_intermission.integrations._checkpoint_folder import write_files


def write_state_dict(weights: dict[str, torch.Tensor], output: str) -> str:
    """`torch.save` the weights to the file `output` (replacing a file of that name); its path.

    Raises:
        ConfigurationError: `output` is a folder, or cannot be written.
    """
    path, partial = _paths(output)
    if os.path.isdir(path):
        raise ConfigurationError(
            f"--output {output!r} is a folder; name the file to write, e.g. "
            f"--output {os.path.join(output, 'model.pt')}."
        )
    try:
        torch.save(weights, partial)
        os.replace(partial, path)
    except (OSError, RuntimeError) as e:  # torch.save reports a file it cannot open as RuntimeError
        raise ConfigurationError(
            f"Cannot write {output!r}: {e}. Choose an --output in a folder you can write to."
        ) from e
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    return path


def write_folder(files: dict[str, bytes], output: str) -> str:
    """Write `files` (bytes by path) into the new folder `output`; its path.

    An empty folder of that name is used; a file or a folder with anything in it is never
    replaced.

    Raises:
        ConfigurationError: `output` is a file or a folder that is not empty, or cannot be written.
    """
    path, partial = _paths(output)
    if os.path.isfile(path):
        raise ConfigurationError(
            f"--output {output!r} is a file; `intermission best` writes this model as a folder. "
            "Choose a new folder name, e.g. --output best-model."
        )
    if os.path.isdir(path) and os.listdir(path):
        raise ConfigurationError(
            f"--output {output!r} is a folder that is not empty; `intermission best` replaces no "
            "folder. Remove it first, or choose a new folder name."
        )
    try:
        write_files(files, partial)
        if os.path.isdir(path):
            os.rmdir(path)  # empty, as checked above
        os.replace(partial, path)
    except OSError as e:
        raise ConfigurationError(
            f"Cannot write {output!r}: {e}. Choose an --output in a folder you can write to."
        ) from e
    finally:
        if os.path.exists(partial):
            shutil.rmtree(partial, ignore_errors=True)
    return path


def _paths(output: str) -> tuple[str, str]:
    """`output` as an absolute path, and the partial name beside it.

    Raises:
        ConfigurationError: The folder `output` would be written in does not exist.
    """
    path = os.path.abspath(output)
    folder = os.path.dirname(path)
    if not os.path.isdir(folder):
        raise ConfigurationError(
            f"Cannot write {output!r}: the folder {folder!r} does not exist. Create it, or "
            "choose another --output."
        )
    return path, os.path.join(folder, f".{os.path.basename(path)}.{uuid.uuid4().hex}.partial")
