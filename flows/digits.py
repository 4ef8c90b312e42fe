"""The demo objective: a small CNN on scikit-learn's handwritten digits (shipped in the package)."""

from __future__ import annotations

from functools import lru_cache

import optuna
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import TensorDataset

from prefect_intermission import TrialLoop


@lru_cache(maxsize=1)
def digits_split() -> tuple[TensorDataset, TensorDataset]:
    """8x8 digit images scaled to [0, 1], split 80/20 in a fixed order."""
    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    labels = torch.tensor(digits.target, dtype=torch.long)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    cut = int(0.8 * len(labels))
    train, val = order[:cut], order[cut:]
    return TensorDataset(images[train], labels[train]), TensorDataset(images[val], labels[val])


def build_model(channels: int, dropout: float) -> nn.Module:
    """Two convolutions, a pooling layer and a linear classifier."""
    return nn.Sequential(
        nn.Conv2d(1, channels, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(channels, 2 * channels, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Dropout(dropout),
        nn.Linear(2 * channels * 16, 10),
    )


def objective(trial: optuna.Trial, loop: TrialLoop) -> float:
    """Validation loss of the CNN after training with the suggested hyperparameters."""
    lr = trial.suggest_float("lr", 1e-3, 0.3, log=True)
    channels = trial.suggest_int("channels", 4, 16)
    dropout = trial.suggest_float("dropout", 0.0, 0.5)
    train_set, val_set = digits_split()
    model = build_model(channels, dropout)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=loop.max_epochs)
    loader = loop.data_loader(train_set, batch_size=32, shuffle=True)  # its place in the epoch is checkpointed
    val_x, val_y = val_set.tensors
    loss_fn = nn.CrossEntropyLoss()
    for _epoch in loop.epochs(model, optimizer, scheduler):
        model.train()
        for x, y in loader:
            optimizer.zero_grad()
            loss_fn(model(x), y).backward()
            optimizer.step()
            loop.step()
        scheduler.step()
        model.eval()
        with torch.no_grad():
            logits = model(val_x)
            val_loss = loss_fn(logits, val_y).item()
            accuracy = (logits.argmax(dim=1) == val_y).float().mean().item()
        loop.extra_state.setdefault("val_accuracy", []).append(accuracy)
        loop.end_epoch(val_loss)
    return loop.best_metric if loop.best_metric is not None else float("nan")
