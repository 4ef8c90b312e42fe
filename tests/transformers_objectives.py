"""Objectives that train a tiny Hugging Face model with `Trainer` (built from a config: nothing
is downloaded), on generated token sequences."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import optuna
import torch
from peft import LoraConfig, get_peft_model
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainerCallback

from prefect_intermission import TrialLoop
from prefect_intermission.integrations.transformers import IntermissionCallback

VOCAB, LENGTH = 50, 12


def token_data(n: int, seed: int) -> list[dict[str, torch.Tensor]]:
    """`n` sequences of random tokens, labelled by whether they hold many low token ids."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, VOCAB, (n, LENGTH), generator=generator)
    labels = ((ids < 20).sum(dim=1) > 3).long()
    mask = torch.ones(LENGTH, dtype=torch.long)
    return [{"input_ids": i, "attention_mask": mask, "labels": y} for i, y in zip(ids, labels)]


def tiny_bert(dropout: float) -> BertForSequenceClassification:
    config = BertConfig(
        hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        vocab_size=VOCAB, max_position_embeddings=LENGTH, num_labels=2,
        hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout,
    )
    return BertForSequenceClassification(config)


def lora_config() -> LoraConfig:
    """The LoRA adapter the classifier trains on the BERT with `{"lora": True}`."""
    return LoraConfig(task_type="SEQ_CLS", r=4, lora_alpha=8, lora_dropout=0.1, target_modules=["query", "value"])


class CrashAtStep(TrainerCallback):
    """Fails the first attempt of the trial once optimizer step `step` ends, as a lost machine would."""

    def __init__(self, pausable: IntermissionCallback, step: int) -> None:
        self.pausable, self.step = pausable, step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step and self.pausable.resumed_from_step is None:
            raise RuntimeError(f"the machine went away after step {self.step}")


class RequestPauseAtStep(TrainerCallback):
    """Asks the study to pause once trial `trial` ends optimizer step `step`, as a UI click would."""

    def __init__(self, loop: TrialLoop, trial: int, step: int) -> None:
        self.loop, self.trial, self.step = loop, trial, step

    def on_step_end(self, args, state, control, **kwargs):
        if self.loop.trial.number == self.trial and state.global_step == self.step:
            self.loop.pause_signal.request(f"rule: test pause at trial {self.trial} step {self.step}")


def classifier(trial: optuna.Trial, loop: TrialLoop) -> float:
    """A one-layer BERT (or, with `objective_params["lora"]`, a LoRA adapter on it) classifying
    token sequences; `objective_params["pause"]` = `{"trial": T, "step": S}` pauses the study there,
    `"crash_at_step"` fails the first attempt there, `"arguments"` add to the `TrainingArguments`,
    `"metric": "constant"` reports 1.0 after every epoch."""
    lr = trial.suggest_float("lr", 1e-3, 1e-1, log=True)
    dropout = trial.suggest_float("dropout", 0.0, 0.3)
    model = tiny_bert(dropout)
    if loop.objective_params.get("lora"):
        model = get_peft_model(model, lora_config())
    constant = loop.objective_params.get("metric") == "constant"
    pausable = IntermissionCallback(loop, metric_for_best_model="constant" if constant else "loss")
    args = pausable.training_arguments(
        learning_rate=lr, per_device_train_batch_size=8, warmup_steps=2, use_cpu=True,
        disable_tqdm=True, logging_strategy="no", **loop.objective_params.get("arguments", {}),
    )
    callbacks: list[TrainerCallback] = []
    if "pause" in loop.objective_params:
        callbacks.append(RequestPauseAtStep(loop, **loop.objective_params["pause"]))
    if "crash_at_step" in loop.objective_params:
        callbacks.append(CrashAtStep(pausable, loop.objective_params["crash_at_step"]))
    trainer = Trainer(
        model=model, args=args, train_dataset=token_data(44, 0), eval_dataset=token_data(16, 1),
        callbacks=callbacks, compute_metrics=(lambda prediction: {"constant": 1.0}) if constant else None,
    )
    return pausable.train(trainer)
