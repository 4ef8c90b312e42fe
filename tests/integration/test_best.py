"""`intermission best`: the best epoch's checkpoint outlives rotation, and its weights are copied out verified."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import optuna
import pytest
import torch
from torch import nn

from prefect_intermission import CheckpointStore, optimize_study
from prefect_intermission.cli.commands import main

MAX_EPOCHS = 4


@pytest.fixture(scope="module")
def study(prefect_server, tmp_path_factory):
    """A finished three-trial study whose trials were best at epoch 1, kept with keep_checkpoints=1."""
    root = tmp_path_factory.mktemp("best")
    (root / "weights").mkdir()
    name = f"best-{uuid.uuid4().hex[:8]}"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("INTERMISSION_TEST_WEIGHTS", str(root / "weights"))
        result = optimize_study(
            study_name=name, objective="tests.objectives:best_at_second_epoch", n_trials=3,
            max_epochs=MAX_EPOCHS, storage=f"sqlite:///{root}/studies.db", checkpoints=str(root / "checkpoints"),
            keep_checkpoints=1, seed=2, sampler="random", pruner="none",
        )
    assert result["status"] == "completed"
    return name, root


def _optuna_study(study) -> optuna.Study:
    name, root = study
    return optuna.load_study(study_name=name, storage=f"sqlite:///{root}/studies.db")


def _weights(path) -> dict[str, torch.Tensor]:
    model = nn.Linear(8, 1)
    model.load_state_dict(torch.load(path, weights_only=True))  # as a user loads the file
    return model.state_dict()


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_the_best_epochs_checkpoint_outlives_rotation(study):
    name, root = study
    store = CheckpointStore(str(root / "checkpoints"))
    for number in range(3):
        trial = store.for_trial(name, number)
        manifest = json.loads(Path(trial.manifest_path).read_text())
        assert [(e["epoch"], e.get("best", False)) for e in manifest["checkpoints"]] == [(1, True), (3, False)]
        assert sorted(p.name for p in Path(trial.folder).glob("*.pt")) == ["epoch-00001.pt", "epoch-00003.pt"]


def test_best_writes_the_best_trials_best_epoch_weights(study, tmp_path, capsys):
    name, root = study
    best = _optuna_study(study).best_trial
    output = tmp_path / "model.pt"

    assert main(["best", name, "--output", str(output)]) == 0

    out = capsys.readouterr().out
    assert f"Trial {best.number} of study {name!r} (value {best.value:.6g})" in out
    assert f"best epoch, epoch 2 of {MAX_EPOCHS}" in out and str(output) in out
    assert f"Load it with: model.load_state_dict(torch.load('{output}', weights_only=True))" in out
    written = _weights(output)
    assert _same(written, _weights(root / "weights" / f"trial-{best.number}.pt"))
    last = CheckpointStore(str(root / "checkpoints")).for_trial(name, best.number).load_latest_valid()
    assert last.epoch == MAX_EPOCHS - 1 and not _same(written, last.state["components"]["model"])


def test_best_with_trial_writes_that_trials_best_weights(study, tmp_path, capsys):
    name, root = study
    other = next(t for t in _optuna_study(study).trials if t.number != _optuna_study(study).best_trial.number)
    output = tmp_path / "other.pt"

    assert main(["best", name, "--trial", str(other.number), "--output", str(output)]) == 0

    assert f"Trial {other.number} of study" in capsys.readouterr().out
    assert _same(_weights(output), _weights(root / "weights" / f"trial-{other.number}.pt"))


def test_best_into_a_folder_asks_for_a_file_name(study, tmp_path, capsys):
    name, _ = study

    assert main(["best", name, "--output", str(tmp_path)]) == 1

    assert f"--output {str(tmp_path)!r} is a folder; name the file to write" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def _copy_of_checkpoints(study, tmp_path) -> tuple[str, Path]:
    name, root = study
    copy = tmp_path / "checkpoints"
    shutil.copytree(root / "checkpoints", copy)
    best = _optuna_study(study).best_trial.number
    return str(copy), copy / name / f"trial-{best:05d}"


def test_a_tampered_best_checkpoint_is_refused_and_nothing_is_written(study, tmp_path, capsys):
    name, _ = study
    checkpoints, folder = _copy_of_checkpoints(study, tmp_path)
    data = bytearray((folder / "epoch-00001.pt").read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit, the size unchanged
    (folder / "epoch-00001.pt").write_bytes(data)
    output = tmp_path / "model.pt"

    assert main(["best", name, "--checkpoints", checkpoints, "--output", str(output)]) == 1

    err = capsys.readouterr().err
    assert "epoch-00001.pt' does not match its XXH3-128 in the manifest" in err
    assert "Nothing was written" in err
    assert list(tmp_path.glob("model.pt*")) == [] and not list(tmp_path.glob(".model.pt*"))


def test_without_a_best_mark_the_last_valid_checkpoint_is_written_and_said_so(study, tmp_path, capsys):
    name, _ = study
    checkpoints, folder = _copy_of_checkpoints(study, tmp_path)
    manifest = json.loads((folder / "manifest.json").read_text())
    for entry in manifest["checkpoints"]:
        entry.pop("best", None)  # as a release before best marks wrote it
    (folder / "manifest.json").write_text(json.dumps(manifest))
    output = tmp_path / "model.pt"

    assert main(["best", name, "--checkpoints", checkpoints, "--output", str(output)]) == 0

    captured = capsys.readouterr()
    assert "is marked as its best epoch's" in captured.err and "last valid checkpoint" in captured.err
    assert f"last valid epoch, epoch {MAX_EPOCHS} of {MAX_EPOCHS}" in captured.out
    last = torch.load(folder / f"epoch-{MAX_EPOCHS - 1:05d}.pt", weights_only=True)
    assert _same(_weights(output), last["components"]["model"])


def test_a_study_with_several_objectives_asks_for_a_trial(prefect_server, tmp_path, capsys):
    storage = f"sqlite:///{tmp_path}/multi.db"
    name = f"multi-{uuid.uuid4().hex[:8]}"
    multi = optuna.create_study(study_name=name, storage=storage, directions=["minimize", "maximize"])
    multi.optimize(lambda t: (t.suggest_float("x", 0, 1), t.suggest_float("y", 0, 1)), n_trials=3)
    output = tmp_path / "model.pt"

    assert main(["best", name, "--storage", storage, "--output", str(output)]) == 1

    err = capsys.readouterr().err
    assert f"Study {name!r} has 2 objectives, so no single best trial; choose one with --trial N" in err
    assert not output.exists()
