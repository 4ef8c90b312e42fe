"""Hugging Face `Trainer` trials pause within an epoch and resume exactly (issue 13, item 5).

Tiny models built from a config, generated data; nothing is downloaded.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import optuna
import pytest
import torch

from prefect_intermission import CheckpointStore, optimize_study
from prefect_intermission.study.state import pause_history

pytestmark = [
    pytest.mark.usefixtures("prefect_stack"),
    # Raised inside Transformers and PEFT by their own calls, on every training run.
    pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing.*:FutureWarning"),
]

OBJECTIVE = "tests.transformers_objectives:classifier"


def _run(root, *, objective_params=None, **overrides):
    return optimize_study(**{
        "study_name": "hf", "objective": OBJECTIVE, "n_trials": 3, "max_epochs": 2,
        "storage": f"sqlite:///{root}/s.db", "checkpoints": str(root / "ckpt"), "seed": 3,
        "objective_params": objective_params or {}, **overrides,
    })


def _study(root) -> optuna.Study:
    return optuna.load_study(study_name="hf", storage=f"sqlite:///{root}/s.db")


def _trials(study: optuna.Study) -> list[tuple]:
    """What makes two studies the same, trial by trial."""
    return [(t.number, t.state.name, t.params, t.intermediate_values, t.values) for t in study.trials]


def _final_weights(root, number: int) -> dict[str, torch.Tensor]:
    """The weights in the trial's last checkpoint (its last epoch's, once it completed)."""
    loaded = CheckpointStore(str(root / "ckpt")).for_trial("hf", number).load_latest_valid()
    assert loaded.state is not None and not loaded.fallbacks
    return loaded.state["components"]["model"]


def _assert_same_weights(paused, straight, trials: int) -> None:
    for number in range(trials):
        a, b = _final_weights(paused, number), _final_weights(straight, number)
        assert a.keys() == b.keys()
        different = [k for k in a if not torch.equal(a[k], b[k])]
        assert different == [], f"trial {number}: {different}"


def test_a_trainer_paused_at_an_epoch_end_and_within_an_epoch_continues_bit_for_bit(tmp_path):
    straight = tmp_path / "straight"
    assert _run(straight)["status"] == "completed"

    paused = tmp_path / "paused"
    # Trial 1 asks for a pause after optimizer step 8: the third of its second epoch's 6 steps.
    params = {"pause": {"trial": 1, "step": 8}}
    at_epoch_end = [{"rule": "tests.objectives:pause_at", "trial": 0, "epoch": 0}]
    assert _run(paused, objective_params=params, pause_rules=at_epoch_end)["status"] == "paused"
    assert _run(paused, objective_params=params)["status"] == "paused"
    history = pause_history(_study(paused))
    assert [h["trials"] for h in history] == [{"0": 0}, {"1": 0}]  # epochs finished when each paused
    stored = CheckpointStore(str(paused / "ckpt")).for_trial("hf", 1).entries()
    assert [(e["epoch"], e.get("mid_epoch", False)) for e in stored] == [(0, False), (1, True)]
    assert _run(paused, objective_params=params)["status"] == "completed"

    assert _trials(_study(paused)) == _trials(_study(straight))
    _assert_same_weights(paused, straight, trials=3)


def test_a_lora_adapter_paused_within_an_epoch_continues_bit_for_bit(tmp_path):
    settings = {"n_trials": 2}
    straight = tmp_path / "straight"
    assert _run(straight, objective_params={"lora": True}, **settings)["status"] == "completed"

    paused = tmp_path / "paused"
    params = {"lora": True, "pause": {"trial": 0, "step": 9}}
    assert _run(paused, objective_params=params, **settings)["status"] == "paused"
    assert _run(paused, objective_params=params, **settings)["status"] == "completed"

    assert _trials(_study(paused)) == _trials(_study(straight))
    _assert_same_weights(paused, straight, trials=2)
    adapter = _final_weights(paused, 0)
    assert any("lora_A" in k for k in adapter) and not any("word_embeddings" in k for k in adapter)


def test_the_pruner_stops_a_trainer_after_the_epoch_it_reported(tmp_path):
    pruner = {"name": "ThresholdPruner", "upper": 0.0}  # every loss is above it
    assert _run(tmp_path, pruner=pruner, n_trials=2)["status"] == "completed"
    study = _study(tmp_path)
    assert [t.state.name for t in study.trials] == ["PRUNED", "PRUNED"]
    assert [list(t.intermediate_values) for t in study.trials] == [[0], [0]]
