"""`intermission best` of a Hugging Face `Trainer` study: a folder `from_pretrained` loads (issue 25).

Tiny models built from a config, generated data; nothing is downloaded.
"""

from __future__ import annotations

import copy
import os
import uuid

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import optuna
import pytest
import torch
from peft import PeftModel, get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict
from transformers import AutoModelForSequenceClassification

from prefect_intermission import CheckpointStore, optimize_study
from prefect_intermission.cli.commands import main
from tests.transformers_objectives import lora_config, tiny_bert, token_data

pytestmark = [
    # Raised inside Transformers and PEFT by their own calls, on every training run.
    pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing.*:FutureWarning"),
]


def _study(root, *, lora: bool) -> tuple[str, str, str]:
    """A finished two-trial study of the tiny BERT (or a LoRA adapter on it); its name,
    storage and checkpoints."""
    name = f"hf-best-{uuid.uuid4().hex[:8]}"
    storage, checkpoints = f"sqlite:///{root}/s.db", str(root / "ckpt")
    result = optimize_study(
        study_name=name, objective="tests.transformers_objectives:classifier", n_trials=2, max_epochs=2,
        storage=storage, checkpoints=checkpoints, seed=4, objective_params={"lora": lora},
    )
    assert result["status"] == "completed"
    return name, storage, checkpoints


@pytest.fixture(scope="module")
def full_study(prefect_server, tmp_path_factory):
    return _study(tmp_path_factory.mktemp("full"), lora=False)


@pytest.fixture(scope="module")
def lora_study(prefect_server, tmp_path_factory):
    return _study(tmp_path_factory.mktemp("lora"), lora=True)


def _best(study, output) -> int:
    name, storage, checkpoints = study
    return main(["best", name, "--storage", storage, "--checkpoints", checkpoints, "--output", str(output)])


def _best_checkpoint_weights(study) -> tuple[optuna.trial.FrozenTrial, dict[str, torch.Tensor]]:
    """The best trial, and the weights of its best epoch's checkpoint (the epoch of its best value)."""
    name, storage, checkpoints = study
    best = optuna.load_study(study_name=name, storage=storage).best_trial
    loaded = CheckpointStore(checkpoints).for_trial(name, best.number).load_best()
    assert loaded.best and loaded.epoch + 1 == _best_epoch(best)
    return best, loaded.state["components"]["model"]


def _best_epoch(trial: optuna.trial.FrozenTrial) -> int:
    """The trial's best epoch, counted from 1 as the command says it."""
    return min(trial.intermediate_values, key=trial.intermediate_values.get) + 1


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _logits(model: torch.nn.Module) -> torch.Tensor:
    batch = token_data(16, 7)
    with torch.no_grad():
        return model.eval()(
            input_ids=torch.stack([x["input_ids"] for x in batch]),
            attention_mask=torch.stack([x["attention_mask"] for x in batch]),
        ).logits


def test_best_of_a_trainer_study_is_a_folder_from_pretrained_loads(full_study, tmp_path, capsys):
    best, weights = _best_checkpoint_weights(full_study)
    output = tmp_path / "best-model"

    assert _best(full_study, output) == 0

    out = capsys.readouterr().out
    assert f"Trial {best.number} of study {full_study[0]!r}" in out
    assert f"the model weights and config of its best epoch, epoch {_best_epoch(best)} of 2" in out
    assert f"written to the folder {output} (config.json, model.safetensors)" in out
    assert (
        "Load it with: from transformers import BertForSequenceClassification; "
        f"model = BertForSequenceClassification.from_pretrained('{output}')"
    ) in out
    # The model alone: no optimizer, scheduler, RNG or trainer state of the checkpoint.
    assert sorted(p.name for p in output.iterdir()) == ["config.json", "model.safetensors"]
    loaded = AutoModelForSequenceClassification.from_pretrained(output)
    assert type(loaded).__name__ == "BertForSequenceClassification"
    assert loaded.config.hidden_size == 16 and loaded.config.num_labels == 2  # the trial's model, not a default
    assert _same(loaded.state_dict(), weights)
    reference = tiny_bert(0.0)
    reference.load_state_dict(weights)
    assert torch.equal(_logits(loaded), _logits(reference))


def test_best_of_a_lora_study_is_an_adapter_folder_peft_loads_onto_its_base(lora_study, tmp_path, capsys):
    best, weights = _best_checkpoint_weights(lora_study)
    output = tmp_path / "best-adapter"

    assert _best(lora_study, output) == 0

    out = capsys.readouterr().out
    assert f"Trial {best.number} of study {lora_study[0]!r}" in out
    assert "the LORA adapter weights of its best epoch" in out
    assert f"Load it with: from peft import PeftModel; model = PeftModel.from_pretrained(base_model, '{output}')" in out
    assert sorted(p.name for p in output.iterdir()) == ["README.md", "adapter_config.json", "adapter_model.safetensors"]
    base = tiny_bert(0.0)
    loaded = PeftModel.from_pretrained(copy.deepcopy(base), output)
    assert _same(get_peft_model_state_dict(loaded), weights)  # the adapter and the classifier it trains
    reference = get_peft_model(copy.deepcopy(base), lora_config())
    set_peft_model_state_dict(reference, weights)
    assert torch.equal(_logits(loaded), _logits(reference))
    assert not torch.equal(_logits(loaded), _logits(base))  # the adapter is applied


def test_a_folder_is_never_written_over_a_file_or_into_a_folder_with_files(full_study, tmp_path, capsys):
    a_file = tmp_path / "best-model"
    a_file.write_text("mine")
    assert _best(full_study, a_file) == 1
    assert "is a file; `intermission best` writes this model as a folder" in capsys.readouterr().err
    assert a_file.read_text() == "mine"

    full = tmp_path / "full"
    full.mkdir()
    (full / "notes.txt").write_text("mine")
    assert _best(full_study, full) == 1
    assert "is a folder that is not empty; `intermission best` replaces no folder" in capsys.readouterr().err
    assert [p.name for p in full.iterdir()] == ["notes.txt"]

    assert _best(full_study, tmp_path / "model.pt") == 1
    err = capsys.readouterr().err
    assert "was trained with the Hugging Face Trainer: its best model is written as a folder" in err
    assert f"--output {tmp_path / 'model'}" in err

    empty = tmp_path / "empty"
    empty.mkdir()
    assert _best(full_study, empty) == 0
    assert sorted(p.name for p in empty.iterdir()) == ["config.json", "model.safetensors"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best-model", "empty", "full"]  # no partial left
