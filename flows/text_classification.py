"""The Transformers demo objective: a small BERT, trained with Hugging Face's `Trainer`, tells
the sentiment of generated movie reviews (built from a config and a word list: nothing is
downloaded). Needs `pip install 'prefect-intermission[transformers]'`.

A pause lands at the trial's next optimizer step, within an epoch; the resumed trial
continues with the next batch.
"""

from __future__ import annotations

import random
from functools import lru_cache

import optuna
import torch
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import Whitespace
from tokenizers.processors import TemplateProcessing
from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast, Trainer

from prefect_intermission import TrialLoop
from prefect_intermission.integrations.transformers import IntermissionCallback

POSITIVE = ["great", "wonderful", "moving", "funny", "brilliant", "charming", "gripping", "superb"]
NEGATIVE = ["dull", "awful", "boring", "clumsy", "tedious", "weak", "messy", "bland"]
FILLER = ["the", "movie", "film", "plot", "acting", "cast", "ending", "story", "was", "is", "and", "but",
          "quite", "really", "very", "a", "bit", "at", "times", "overall"]
SPECIAL = ["[PAD]", "[UNK]", "[CLS]"]
MAX_LENGTH = 16


@lru_cache(maxsize=1)
def tokenizer() -> PreTrainedTokenizerFast:
    """A word-level tokenizer over the demo's words, with `[CLS]` in front of every review."""
    vocab = {word: i for i, word in enumerate([*SPECIAL, "not", *POSITIVE, *NEGATIVE, *FILLER])}
    words = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    words.pre_tokenizer = Whitespace()
    words.post_processor = TemplateProcessing(single="[CLS] $A", special_tokens=[("[CLS]", vocab["[CLS]"])])
    return PreTrainedTokenizerFast(
        tokenizer_object=words, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]"
    )


def review(rng: random.Random) -> tuple[str, int]:
    """A review of filler words and three opinions, each maybe negated by `not`; 1 if it is
    positive on balance."""
    words = rng.choices(FILLER, k=8)
    balance = 0
    for _ in range(3):
        positive = rng.random() < 0.5
        negated = rng.random() < 0.25
        opinion = rng.choice(POSITIVE if positive else NEGATIVE)
        words.insert(rng.randrange(len(words) + 1), f"not {opinion}" if negated else opinion)
        balance += 1 if positive != negated else -1
    return " ".join(words), int(balance > 0)


@lru_cache(maxsize=4)
def reviews(n: int, seed: int) -> list[dict[str, torch.Tensor]]:
    """`n` tokenized reviews with their labels, the same for the same seed."""
    rng = random.Random(seed)
    texts, labels = zip(*(review(rng) for _ in range(n)))
    encoded = tokenizer()(
        list(texts), padding="max_length", max_length=MAX_LENGTH, truncation=True, return_tensors="pt"
    )
    return [
        {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor(label)}
        for ids, mask, label in zip(encoded["input_ids"], encoded["attention_mask"], labels)
    ]


def accuracy(prediction) -> dict[str, float]:
    """The share of reviews whose sentiment the model gets right."""
    logits, labels = prediction
    return {"accuracy": float((logits.argmax(-1) == labels).mean())}


def objective(trial: optuna.Trial, loop: TrialLoop) -> float:
    """Validation loss of the classifier after training with the suggested hyperparameters.

    `objective_params` may set `train_examples` (default 2000) and `batch_size` (default 32).
    """
    lr = trial.suggest_float("lr", 1e-4, 1e-2, log=True)
    hidden = trial.suggest_int("hidden", 16, 64, step=16)
    layers = trial.suggest_int("layers", 1, 2)
    dropout = trial.suggest_float("dropout", 0.0, 0.3)
    settings = loop.objective_params
    config = BertConfig(
        vocab_size=len(tokenizer()), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
        intermediate_size=2 * hidden, max_position_embeddings=MAX_LENGTH, num_labels=2,
        hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout,
    )
    pausable = IntermissionCallback(loop)  # reports eval_loss to Optuna after every epoch
    args = pausable.training_arguments(
        learning_rate=lr, per_device_train_batch_size=settings.get("batch_size", 32), warmup_steps=10,
        logging_strategy="epoch", disable_tqdm=True,
    )
    trainer = Trainer(
        model=BertForSequenceClassification(config), args=args, compute_metrics=accuracy,
        train_dataset=reviews(settings.get("train_examples", 2000), 0), eval_dataset=reviews(400, 1),
    )
    return pausable.train(trainer)
