"""The checkpoint store: complete files only, names that stay inside the root, versions checked."""

from __future__ import annotations

import io
import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
import xxhash

from prefect_intermission import CheckpointError, CheckpointStore, ConfigurationError
from tests.manifests import list_as_written


def test_save_then_load_returns_the_state_with_its_format_version(tmp_path):
    trial = CheckpointStore(str(tmp_path)).for_trial("study", 3)
    path = trial.save(0, {"weights": torch.arange(4.0), "note": "x"})
    assert path.endswith("study/trial-00003/epoch-00000.pt")
    state = trial.load_latest_valid().state
    assert torch.equal(state["weights"], torch.arange(4.0))
    assert state["format_version"] == 1


def test_no_partial_file_is_left_when_a_write_fails(tmp_path, monkeypatch):
    trial = CheckpointStore(str(tmp_path)).for_trial("study", 0)
    trial.save(0, {"w": torch.zeros(2)})

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(CheckpointError, match="No space left on device"):
        trial.save(1, {"w": torch.ones(2)})
    assert trial.epochs() == [0]
    assert sorted(os.listdir(trial.folder)) == ["epoch-00000.pt", "manifest.json"]
    assert torch.equal(trial.load_latest_valid().state["w"], torch.zeros(2))


@pytest.mark.parametrize("name", ["../escape", "a/../../b", "/abs", "..", "a\\b"])
def test_study_names_cannot_leave_the_checkpoint_root(tmp_path, name):
    root = tmp_path / "root"
    store = CheckpointStore(str(root))
    if name == "..":
        with pytest.raises(ConfigurationError, match="cannot be used as a study name"):
            store.for_trial(name, 0)
        return
    path = store.for_trial(name, 0).save(0, {"w": torch.zeros(1)})
    assert os.path.realpath(path).startswith(str(root) + os.sep)
    assert len(os.listdir(root)) == 1
    assert os.path.basename(os.path.dirname(os.path.dirname(path))) != ".."


def test_a_checkpoint_of_another_format_version_is_refused(tmp_path):
    trial = CheckpointStore(str(tmp_path)).for_trial("study", 0)
    trial.save(0, {"w": torch.zeros(1)})
    buffer = io.BytesIO()
    torch.save({"format_version": 99, "epoch": 0}, buffer)
    _rewrite_with_manifest(trial, 0, buffer.getvalue())
    loaded = trial.load_latest_valid()
    assert loaded.state is None
    assert "format version 99" in loaded.fallbacks[0]["problem"]
    assert "release that wrote it" in loaded.fallbacks[0]["problem"]


def _rewrite_with_manifest(trial, epoch, data: bytes) -> None:
    """Replace a checkpoint and its manifest entry, as a writer of another version would."""
    with open(trial.path(epoch), "wb") as f:
        f.write(data)
    with open(trial.manifest_path) as f:
        manifest = json.load(f)
    for entry in manifest["checkpoints"]:
        if entry["epoch"] == epoch:
            list_as_written(entry, data)
    with open(trial.manifest_path, "w") as f:
        json.dump(manifest, f)


def test_keep_last_must_be_positive(tmp_path):
    with pytest.raises(ConfigurationError, match="keep_last must be >= 1, but got keep_last=0"):
        CheckpointStore(str(tmp_path), keep_last=0)


def test_an_unknown_protocol_is_a_configuration_error():
    with pytest.raises(ConfigurationError, match="Cannot open the checkpoint location"):
        CheckpointStore("nosuchproto://bucket/x")


def test_a_checkpoint_is_a_plain_torch_file_listed_with_its_true_size_and_hash(tmp_path):
    trial = CheckpointStore(str(tmp_path)).for_trial("study", 0)
    weights = {f"layer{i}": torch.randn(300_000) for i in range(4)}  # chunks large enough to hash aside
    path = trial.save(0, {"weights": weights})
    data = Path(path).read_bytes()
    (entry,) = json.loads(Path(trial.manifest_path).read_text())["checkpoints"]
    assert (entry["size"], entry["xxh3_128"]) == (len(data), xxhash.xxh3_128(data).hexdigest())
    loaded = torch.load(path, weights_only=True)  # what a user does with it outside the plugin
    assert all(torch.equal(loaded["weights"][k], weights[k]) for k in weights)


def test_saves_leave_torch_save_computing_zip_checksums_for_everyone_else(tmp_path):
    # torch 2.6 has no such setting: it always computes them (the saves above pass there too).
    config = pytest.importorskip("torch.utils.serialization").config
    store = CheckpointStore(str(tmp_path))
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda n: store.for_trial("study", n).save(0, {"w": torch.randn(500_000)}), range(8)))
    assert config.save.compute_crc32 is True


# Written by prefect-intermission 0.1.0 (manifest format version 1, SHA-256): epochs 0 to 2
# of {"epoch": e, "weights": torch.arange(4.0) + e} with keep_last=2.
SHA256_RELEASE = Path(__file__).parents[1] / "data" / "checkpoints-v1"


@pytest.fixture
def sha256_trial(tmp_path):
    """A copy of a trial's checkpoints as the release before XXH3-128 wrote them."""
    shutil.copytree(SHA256_RELEASE, tmp_path, dirs_exist_ok=True)
    trial = CheckpointStore(str(tmp_path), keep_last=2).for_trial("written-with-sha256", 0)
    assert json.loads(Path(trial.manifest_path).read_text())["format_version"] == 1
    return trial


def test_checkpoints_listed_with_sha256_by_an_earlier_release_still_load(sha256_trial):
    sha256_trial.check_format()
    loaded = sha256_trial.load_latest_valid()
    assert (loaded.epoch, loaded.fallbacks) == (2, [])
    assert torch.equal(loaded.state["weights"], torch.arange(4.0) + 2)


def test_an_altered_checkpoint_of_an_earlier_release_is_found_by_its_sha256(sha256_trial):
    path = sha256_trial.path(2)
    data = bytearray(Path(path).read_bytes())
    data[len(data) // 2] ^= 0xFF
    Path(path).write_bytes(data)
    loaded = sha256_trial.load_latest_valid()
    assert loaded.epoch == 1 and torch.equal(loaded.state["weights"], torch.arange(4.0) + 1)
    assert "does not match its SHA-256 in the manifest" in loaded.fallbacks[0]["problem"]


def test_a_trial_of_an_earlier_release_continues_with_both_checksums(sha256_trial):
    sha256_trial.save(3, {"epoch": 3, "weights": torch.arange(4.0) + 3})
    manifest = json.loads(Path(sha256_trial.manifest_path).read_text())
    assert manifest["format_version"] == 2
    assert [sorted(e) for e in manifest["checkpoints"]] == [
        ["epoch", "file", "sha256", "size"], ["epoch", "file", "size", "xxh3_128"],
    ]
    assert sorted(os.listdir(sha256_trial.folder)) == ["epoch-00002.pt", "epoch-00003.pt", "manifest.json"]
    os.remove(sha256_trial.path(3))  # the one from an earlier release is still verified
    loaded = sha256_trial.load_latest_valid()
    assert loaded.epoch == 2 and torch.equal(loaded.state["weights"], torch.arange(4.0) + 2)


def test_the_best_epochs_checkpoint_outlives_the_last_ones_until_a_better_one(tmp_path):
    trial = CheckpointStore(str(tmp_path), keep_last=1).for_trial("study", 0)
    for epoch, best in [(0, True), (1, True), (2, False), (3, False)]:
        trial.save(epoch, {"w": torch.full((2,), float(epoch))}, best=best)
    assert trial.epochs() == [1, 3]
    assert sorted(os.listdir(trial.folder)) == ["epoch-00001.pt", "epoch-00003.pt", "manifest.json"]
    best = trial.load_best()
    assert (best.epoch, best.best) == (1, True) and torch.equal(best.state["w"], torch.full((2,), 1.0))
    assert trial.load_latest_valid().epoch == 3  # a continuation still starts after the last

    trial.save(4, {"w": torch.full((2,), 4.0)}, best=True)
    assert trial.epochs() == [4]
    assert sorted(os.listdir(trial.folder)) == ["epoch-00004.pt", "manifest.json"]
    assert trial.load_best().epoch == 4


def test_a_damaged_best_checkpoint_is_refused_not_replaced_by_another(tmp_path):
    trial = CheckpointStore(str(tmp_path), keep_last=1).for_trial("study", 0)
    trial.save(0, {"w": torch.zeros(2)}, best=True)
    trial.save(1, {"w": torch.ones(2)})
    with open(trial.path(0), "r+b") as f:
        f.truncate(100)
    with pytest.raises(CheckpointError, match="epoch-00000.pt' has 100 bytes, the manifest says"):
        trial.load_best()


def test_without_a_best_mark_the_newest_valid_checkpoint_stands_in(sha256_trial):
    loaded = sha256_trial.load_best()
    assert (loaded.epoch, loaded.best) == (2, False)
