"""Lightning objectives the tests train: a dropout MLP on generated data, 8 steps an epoch."""

from __future__ import annotations

import os
import signal
from typing import Any

import lightning as L
import optuna
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from prefect_intermission import TrialLoop
from prefect_intermission.integrations.lightning import fit
from prefect_intermission.training.data import ResumableDataLoader

#: Trainer settings that keep a test's output and files small.
QUIET: dict[str, Any] = {
    "accelerator": "cpu", "logger": False, "enable_progress_bar": False, "enable_model_summary": False,
}
STEPS_PER_EPOCH = 8


def _data() -> tuple[TensorDataset, TensorDataset]:
    generator = torch.Generator().manual_seed(1234)
    x = torch.randn(160, 8, generator=generator)
    y = (x[:, :4].sum(dim=1, keepdim=True) > 0).float()
    return TensorDataset(x[:128], y[:128]), TensorDataset(x[128:], y[128:])


class MLP(L.LightningModule):
    """Two layers with dropout, SGD with momentum and a step LR schedule (or, with `plateau`, one
    that halves the LR after every epoch without a 90% better validation loss); counts its
    validation batches."""

    def __init__(self, lr: float, hidden: int, plateau: bool = False) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Linear(8, hidden), nn.ReLU(), nn.Dropout(0.2), nn.Linear(hidden, 1))
        self.validated_batches = 0

    def _loss(self, batch: Any) -> torch.Tensor:
        x, y = batch
        return nn.functional.binary_cross_entropy_with_logits(self.net(x), y)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self._loss(batch)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        if not self.trainer.sanity_checking:
            self.validated_batches += 1
        self.log("val_loss", self._loss(batch), batch_size=len(batch[0]))

    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.SGD(self.parameters(), lr=self.hparams.lr, momentum=0.9)
        if self.hparams.plateau:
            plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=0, threshold=0.9)
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": plateau, "monitor": "val_loss"}}
        return [optimizer], [torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.8)]


class PauseAtStep(L.Callback):
    """Asks the study to pause (as a pause rule would) once the trainer has taken `step` steps."""

    def __init__(self, loop: TrialLoop, step: int) -> None:
        self.loop, self.step = loop, step

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        signal = self.loop.context.pause_signal
        if trainer.global_step == self.step and signal is not None:
            signal.request(f"rule: test pause at step {self.step}")


class SigtermAtStep(L.Callback):
    """Sends this process SIGTERM (as a pod's shutdown would) once the trainer has taken `step` steps."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGTERM)


def classifier(trial: optuna.Trial, loop: TrialLoop, *, trained: list[MLP] | None = None) -> float:
    """`MLP` on shuffled batches that can stop within an epoch (`ResumableDataLoader`).

    `loop.objective_params["pause_at"] = {"trial": n, "step": s}` asks for a pause when
    trial n has taken s steps, `"sigterm_at"` sends SIGTERM instead; `"plain_loader": true`
    shuffles with a plain `DataLoader`; `"plateau": true` schedules with `ReduceLROnPlateau`.
    Each model built is appended to `trained`, when given.
    """
    lr = trial.suggest_float("lr", 1e-2, 0.3, log=True)
    hidden = trial.suggest_int("hidden", 4, 32)
    train, val = _data()
    params = loop.objective_params
    if params.get("plain_loader"):
        train_loader = DataLoader(train, batch_size=16, shuffle=True, generator=loop.generator)
    else:
        train_loader = ResumableDataLoader(train, batch_size=16, shuffle=True, generator=loop.generator)
    pause = params.get("pause_at") or {}
    callbacks: list[L.Callback] = [PauseAtStep(loop, pause["step"])] if pause.get("trial") == trial.number else []
    if params.get("sigterm_at") is not None:
        callbacks.append(SigtermAtStep(params["sigterm_at"]))
    model = MLP(lr, hidden, plateau=bool(params.get("plateau")))
    if trained is not None:
        trained.append(model)
    return fit(
        loop, model, train_dataloaders=train_loader, val_dataloaders=DataLoader(val, batch_size=32),
        callbacks=callbacks, **QUIET,
    )
