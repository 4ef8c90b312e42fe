"""A compute-bound objective for the overhead benchmark, in two forms: trained through the
plugin's `TrialLoop`, and as a plain Optuna objective. Both do exactly the same work.

The work per epoch is `BENCH_STEPS_PER_EPOCH` optimisation steps of a fixed-size MLP on
synthetic data (the harness calibrates it to about one second); the suggested
hyperparameters change the numbers, never the amount of work. No sleeps.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import optuna
import torch
from torch import nn

if TYPE_CHECKING:  # the plain side must not import Prefect: its memory is part of the figure
    from prefect_intermission import TrialLoop

BATCH = 256
FEATURES = 512
HIDDEN = 1024


def steps_per_epoch() -> int:
    """Optimisation steps per epoch, from `BENCH_STEPS_PER_EPOCH`."""
    return int(os.environ.get("BENCH_STEPS_PER_EPOCH", "20"))


def _setup(trial: optuna.Trial) -> tuple[nn.Module, torch.optim.Optimizer, torch.Tensor, torch.Tensor]:
    lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
    momentum = trial.suggest_float("momentum", 0.0, 0.95)
    model = nn.Sequential(nn.Linear(FEATURES, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    data = torch.Generator().manual_seed(0)
    x = torch.randn(BATCH * 8, FEATURES, generator=data)
    y = torch.randint(0, 10, (BATCH * 8,), generator=data)
    return model, optimizer, x, y


def _train_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
                 order: torch.Tensor) -> float:
    loss_fn = nn.CrossEntropyLoss()
    total = 0.0
    for step in range(steps_per_epoch()):
        i = order[(step * BATCH) % len(order):][:BATCH]
        if len(i) < BATCH:
            i = order[:BATCH]
        optimizer.zero_grad()
        loss = loss_fn(model(x[i]), y[i])
        loss.backward()
        optimizer.step()
        total += loss.item()
    return total / steps_per_epoch()


def plugin_objective(trial: optuna.Trial, loop: "TrialLoop") -> float:
    """Trained through the plugin: a checkpoint, a report and a pause check every epoch."""
    model, optimizer, x, y = _setup(trial)
    for _epoch in loop.epochs(model, optimizer):
        order = torch.randperm(len(x), generator=loop.generator)
        loop.end_epoch(_train_epoch(model, optimizer, x, y, order))
    assert loop.last_metric is not None
    return loop.last_metric


def plain_objective(trial: optuna.Trial, max_epochs: int) -> float:
    """The same training in a plain Optuna objective: a report every epoch, nothing else."""
    model, optimizer, x, y = _setup(trial)
    generator = torch.Generator().manual_seed(trial.number)
    loss = float("nan")
    for epoch in range(max_epochs):
        order = torch.randperm(len(x), generator=generator)
        loss = _train_epoch(model, optimizer, x, y, order)
        trial.report(loss, epoch)
    return loss
