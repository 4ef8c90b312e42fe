"""The Lightning demo objective: digits.py's CNN on scikit-learn's digits, trained by `lightning.Trainer`.

A pause stops a trial at its next step (its training loader can say where it is), and a
resumed trial continues there through Lightning's `ckpt_path`. Needs the `lightning` and
`demo` extras.
"""

from __future__ import annotations

import warnings
from typing import Any

import lightning as L
import optuna
import torch
from torch import nn
from torch.utils.data import DataLoader

from flows.digits import build_model, digits_split
from prefect_intermission import TrialLoop
from prefect_intermission.integrations.lightning import fit

# 1,437 images of 8x8 pixels load fastest in the training process itself.
warnings.filterwarnings("ignore", ".*does not have many workers.*")


class DigitsClassifier(L.LightningModule):
    """`build_model`'s CNN with SGD, momentum, weight decay and a cosine schedule over the epochs."""

    def __init__(self, lr: float, channels: int, dropout: float, epochs: int) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model = build_model(channels, dropout)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        images, labels = batch
        loss = nn.functional.cross_entropy(self.model(images), labels)
        self.log("train_loss", loss, on_epoch=True, on_step=False, batch_size=len(labels))
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        images, labels = batch
        logits = self.model(images)
        self.log("val_loss", nn.functional.cross_entropy(logits, labels), batch_size=len(labels))
        accuracy = (logits.argmax(dim=1) == labels).float().mean()
        self.log("val_accuracy", accuracy, batch_size=len(labels))

    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.SGD(self.parameters(), lr=self.hparams.lr, momentum=0.9, weight_decay=1e-4)
        return [optimizer], [torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=self.hparams.epochs)]


def objective(trial: optuna.Trial, loop: TrialLoop) -> float:
    """Validation loss of the CNN after training with the suggested hyperparameters."""
    lr = trial.suggest_float("lr", 1e-3, 0.3, log=True)
    channels = trial.suggest_int("channels", 4, 16)
    dropout = trial.suggest_float("dropout", 0.0, 0.5)
    train_set, val_set = digits_split()
    return fit(
        loop,
        DigitsClassifier(lr, channels, dropout, epochs=loop.max_epochs),
        train_dataloaders=loop.data_loader(train_set, batch_size=32, shuffle=True),
        val_dataloaders=DataLoader(val_set, batch_size=len(val_set)),
        monitor="val_loss",
        accelerator="auto",
        logger=False,  # the study reports to Optuna; add a Lightning logger to keep curves too
        enable_progress_bar=False,
        enable_model_summary=False,
    )
