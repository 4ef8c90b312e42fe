import optuna
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from prefect_intermission import TrialLoop


def objective(trial: optuna.Trial, loop: TrialLoop) -> float:
    lr = trial.suggest_float("lr", 1e-3, 3e-2, log=True)
    hidden = trial.suggest_int("hidden", 16, 64)
    x = torch.randn(100_000, 16, generator=torch.Generator().manual_seed(0))
    y = torch.sin(x).sum(dim=1, keepdim=True)
    train, (x_val, y_val) = TensorDataset(x[:80_000], y[:80_000]), (x[80_000:], y[80_000:])
    model = nn.Sequential(nn.Linear(16, hidden), nn.ReLU(), nn.Linear(hidden, 1))
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    loader = DataLoader(train, batch_size=64, shuffle=True, generator=loop.generator)

    for epoch in loop.epochs(model, optimizer):  # a resumed trial starts from its checkpoint
        for xb, yb in loader:
            optimizer.zero_grad()
            nn.functional.mse_loss(model(xb), yb).backward()
            optimizer.step()
        with torch.no_grad():
            val_loss = nn.functional.mse_loss(model(x_val), y_val).item()
        loop.end_epoch(val_loss)  # reports, checkpoints, and pauses here if asked to
    return loop.best_metric
