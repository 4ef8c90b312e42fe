"""`intermission best`: a study's best weights, verified against the manifest, copied out.

The study and its checkpoints are found as `intermission status` finds them: from the
study's latest flow run, unless `--storage` or `--checkpoints` say otherwise. A trial trained
with the Hugging Face `Trainer` gives a folder `from_pretrained` loads (a PEFT model's:
`PeftModel.from_pretrained(base_model, folder)`); any other trial a file holding the model's
`state_dict`, for `model.load_state_dict(torch.load(path, weights_only=True))`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import optuna
import torch
from optuna.trial import FrozenTrial

from prefect_intermission.cli._outputs import write_folder, write_state_dict
from prefect_intermission.cli._study_facts import checkpoint_location, load_study
from prefect_intermission.errors import CheckpointError, ConfigurationError
from prefect_intermission.integrations._pretrained_folder import pretrained_model
from prefect_intermission.study.config import StudyConfig
from prefect_intermission.study.flow_runs import StatusError, latest_runs, study_config_of
from prefect_intermission.study.results import best_trial, best_value, several_objectives
from prefect_intermission.study.setup import checkpoint_storage_options
from prefect_intermission.training.store import CheckpointStore


@dataclass(frozen=True)
class ModelOutput:
    """What `export_best` wrote, and how it loads.

    Attributes:
        path: The file or folder written.
        what: What it holds, in words ("the model weights (a state_dict)").
        load_with: The Python that loads it.
        files: The files of the folder written; empty when a file was written.
    """

    path: str
    what: str
    load_with: str
    files: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ExportedWeights:
    """What `export_best` wrote.

    Attributes:
        study_name: The study.
        trial: The trial's number.
        value: The trial's value (None while it is unfinished).
        epoch: The zero-based epoch whose weights were written.
        max_epochs: The study's epochs per trial (None when no flow run says).
        metric: That epoch's metric.
        best_marked: Whether the checkpoint was marked as the best epoch's; if not, it
            is the trial's last valid one.
        output: The file or folder written, and how it loads.
        notes: What the user should know about how they were found.
    """

    study_name: str
    trial: int
    value: float | None
    epoch: int
    max_epochs: int | None
    metric: float | None
    best_marked: bool
    output: ModelOutput
    notes: list[str] = field(default_factory=list)

    @property
    def path(self) -> str:
        """The file or folder written."""
        return self.output.path


def _study_config(target: str) -> tuple[StudyConfig, bool]:
    """The configuration of the study's latest flow run, or the defaults when there is none;
    whether a run was found."""
    try:
        return study_config_of(latest_runs(target)[0]), True
    except StatusError:
        return StudyConfig(study_name=target, objective=""), False


def chosen_trial(study: optuna.Study, number: int | None) -> FrozenTrial:
    """Trial `number`, or the study's best trial.

    Raises:
        ConfigurationError: There is no such trial, no finished one, or the study has
            several objectives and no `number` was given.
    """
    trials = study.get_trials(deepcopy=False)
    if number is not None:
        for t in trials:
            if t.number == number:
                return t
        raise ConfigurationError(
            f"Study {study.study_name!r} has no trial {number}; its trials are numbered "
            f"0 to {len(trials) - 1}." if trials else f"Study {study.study_name!r} has no trials yet."
        )
    if several_objectives(study):
        pareto = sorted(t.number for t in study.best_trials)
        raise ConfigurationError(
            f"Study {study.study_name!r} has {len(study.directions)} objectives, so no single best "
            f"trial; choose one with --trial N (its Pareto-optimal trials: {pareto})."
        )
    best = best_trial(study)
    if best is None:
        raise ConfigurationError(
            f"Study {study.study_name!r} has no completed trial yet, so no best one; wait for one "
            "to finish, or choose a trial with --trial N."
        )
    return best


def _model_weights(state: dict[str, Any], trial: int) -> dict[str, torch.Tensor]:
    """The model's `state_dict` in a checkpoint: a `TrialLoop`'s (and the Transformers
    callback's) `components["model"]`, or Lightning's `state_dict` (the `LightningModule`'s).

    Raises:
        CheckpointError: The checkpoint holds neither.
    """
    weights = state.get("components", {}).get("model", state.get("state_dict"))
    if not isinstance(weights, dict):
        raise CheckpointError(
            f"The best checkpoint of trial {trial} holds no model weights (no components['model'], "
            "no Lightning state_dict). Nothing was written; choose another trial with --trial N."
        )
    return weights


def _write(state: dict[str, Any], output: str, *, trial: int) -> ModelOutput:
    """Write the checkpoint's model to `output`: a `from_pretrained` folder for a Hugging Face
    `Trainer`'s model, otherwise its `state_dict` in a file."""
    try:
        pretrained = pretrained_model(state)
    except CheckpointError as e:
        raise CheckpointError(f"{e} Nothing was written.") from e
    if pretrained is None:
        path = write_state_dict(_model_weights(state, trial), output)
        return ModelOutput(
            path, "the model weights (a state_dict)",
            f"model.load_state_dict(torch.load({path!r}, weights_only=True))",
        )
    stem, suffix = os.path.splitext(output)
    if suffix in (".pt", ".pth"):
        raise ConfigurationError(
            f"Trial {trial} was trained with the Hugging Face Trainer: its best model is written as "
            f"a folder that from_pretrained loads, not as a {suffix} file. Pass a folder name, e.g. "
            f"--output {stem}."
        )
    path = write_folder(pretrained.files, output)
    return ModelOutput(path, pretrained.what, pretrained.load_with(path), sorted(pretrained.files))


def export_best(
    target: str,
    output: str,
    *,
    storage: str | None = None,
    checkpoints: str | None = None,
    trial: int | None = None,
) -> ExportedWeights:
    """Write the model weights of the best epoch of the study's best trial (or of `trial`) to `output`.

    Args:
        target: The study's name or flow-run id.
        output: The file to write, or, for a trial trained with the Hugging Face `Trainer`, the
            folder (new or empty).
        storage: The study's Optuna storage URL (default: its flow run's).
        checkpoints: Where its checkpoints are (default: its flow run's).
        trial: The trial's number (default: the study's best trial).

    Raises:
        ConfigurationError: The study, the trial or a writable `output` cannot be found (a
            folder is never written over a file or into a folder that is not empty).
        CheckpointError: The checkpoint is missing, damaged or altered; nothing is written.
    """
    config, from_run = _study_config(target)
    notes: list[str] = []
    study = load_study(config.study_name, storage or config.execution.storage)
    chosen = chosen_trial(study, trial)
    store = CheckpointStore(
        checkpoints or checkpoint_location(config, notes),
        storage_options=checkpoint_storage_options(config.checkpointing.checkpoint_credentials),
    )
    stored = store.for_trial(config.study_name, chosen.number)
    try:
        loaded = stored.load_best()
    except CheckpointError as e:
        raise CheckpointError(
            f"The best checkpoint of trial {chosen.number} of study {config.study_name!r} was "
            f"refused: {e}. Nothing was written; choose another trial with --trial N."
        ) from e
    if loaded.state is None:
        problems = "; ".join(f["problem"] for f in loaded.fallbacks)
        raise CheckpointError(
            f"Trial {chosen.number} of study {config.study_name!r} has no valid checkpoint in "
            f"{stored.folder!r}{f' ({problems})' if problems else ''}. Nothing was written; pass "
            "the right --checkpoints, or choose another trial with --trial N."
        )
    assert loaded.epoch is not None
    if not loaded.best:
        notes.append(
            f"no checkpoint of trial {chosen.number} is marked as its best epoch's (they were "
            "written by an earlier release): these are the weights of its last valid checkpoint."
        )
    written = _write(loaded.state, output, trial=chosen.number)
    return ExportedWeights(
        study_name=config.study_name,
        trial=chosen.number,
        value=best_value(chosen, study.directions[0]) if not several_objectives(study) else None,
        epoch=loaded.epoch,
        max_epochs=config.training.max_epochs if from_run else None,
        metric=loaded.state.get("last_metric"),
        best_marked=loaded.best,
        output=written,
        notes=notes,
    )
