"""Small objectives the tests train: real models and optimizers, tiny data, fast epochs."""

from __future__ import annotations

import os
import time

import optuna
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from prefect_intermission import TrialLoop


def _dataset() -> TensorDataset:
    generator = torch.Generator().manual_seed(1234)
    x = torch.randn(256, 8, generator=generator)
    y = (x[:, :4].sum(dim=1, keepdim=True) > 0).float()
    return TensorDataset(x, y)


def classifier(trial: optuna.Trial, loop: TrialLoop) -> float:
    """A dropout MLP trained with SGD+momentum, a step LR schedule and shuffled batches."""
    lr = trial.suggest_float("lr", 1e-3, 0.3, log=True)
    hidden = trial.suggest_int("hidden", 4, 32)
    model = nn.Sequential(nn.Linear(8, hidden), nn.ReLU(), nn.Dropout(0.2), nn.Linear(hidden, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.7)
    loader = DataLoader(_dataset(), batch_size=32, shuffle=True, generator=loop.generator)
    loss_fn = nn.BCEWithLogitsLoss()
    loop.extra_state.setdefault("losses", [])
    for _epoch in loop.epochs(model, optimizer, scheduler):
        model.train()
        total = 0.0
        for x, y in loader:
            optimizer.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            optimizer.step()
            loop.step()
            total += loss.item()
        scheduler.step()
        loop.extra_state["losses"].append(total)
        loop.end_epoch(total / len(loader))
    return loop.best_metric


def slow_classifier(trial: optuna.Trial, loop: TrialLoop) -> float:
    """`classifier` with epochs stretched (~0.3 s, or `INTERMISSION_TEST_EPOCH_SECONDS`), so a
    pause or a kill lands mid-training."""
    original_end_epoch = loop.end_epoch
    seconds = float(os.environ.get("INTERMISSION_TEST_EPOCH_SECONDS", "0.3"))

    def end_epoch(metric: float) -> None:
        time.sleep(seconds)
        original_end_epoch(metric)

    loop.end_epoch = end_epoch  # type: ignore[method-assign]
    return classifier(trial, loop)


def reshaped_classifier(trial: optuna.Trial, loop: TrialLoop) -> float:
    """`classifier` edited between two runs: a hidden layer twice as wide."""
    lr = trial.suggest_float("lr", 1e-3, 0.3, log=True)
    hidden = 2 * trial.suggest_int("hidden", 4, 32)
    model = nn.Sequential(nn.Linear(8, hidden), nn.ReLU(), nn.Dropout(0.2), nn.Linear(hidden, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.7)
    for _epoch in loop.epochs(model, optimizer, scheduler):
        loop.end_epoch(0.0)
    return loop.best_metric


def raises_at_second_epoch(trial: optuna.Trial, loop: TrialLoop) -> float:
    """`classifier`, except that its second epoch raises, as a bug in user code would."""
    original_end_epoch = loop.end_epoch

    def end_epoch(metric: float) -> None:
        if loop.epoch >= 1:
            raise RuntimeError("boom")
        original_end_epoch(metric)

    loop.end_epoch = end_epoch  # type: ignore[method-assign]
    return classifier(trial, loop)


def stalls_after_first_epoch(trial: optuna.Trial, loop: TrialLoop) -> float:
    """A metric that never improves after epoch 0 (1.0, then 2.0 at every later epoch)."""
    model = nn.Linear(8, trial.suggest_int("hidden", 1, 4))
    for epoch in loop.epochs(model):
        loop.end_epoch(1.0 if epoch == 0 else 2.0)
    return loop.best_metric


def two_objectives(trial: optuna.Trial, loop: TrialLoop) -> tuple[float, int]:
    """`classifier`'s loss, and the model's width: small and accurate pull apart."""
    return classifier(trial, loop), trial.params["hidden"]


def fails_some_trials(trial: optuna.Trial, loop: TrialLoop) -> float:
    """Trial 1 reports NaN after its first epoch, trial 3 raises ValueError, trial 4 runs out of
    GPU memory; others train."""
    if trial.number == 1:
        for _epoch in loop.epochs(torch.nn.Linear(1, 1)):
            loop.end_epoch(float("nan"))
    if trial.number == 3:
        raise ValueError("bad batch in trial 3")
    if trial.number == 4:  # as CUDA raises it when a trial's parameters ask for too much
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
    return classifier(trial, loop)


def always_fails(trial: optuna.Trial, loop: TrialLoop) -> float:
    raise ValueError(f"trial {trial.number}: the data is gone")


def scaled_classifier(trial: optuna.Trial, loop: TrialLoop) -> float:
    """`classifier`, its value multiplied by `objective_params["scale"]` (recorded on the trial)."""
    scale = loop.objective_params["scale"]
    trial.set_user_attr("scale_seen", scale)
    return classifier(trial, loop) * scale


def record_finished_trials(path: str):
    """A callback factory: the callback appends `number state` of each finished trial to `path`."""

    def callback(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        with open(path, "a") as f:
            f.write(f"{trial.number} {trial.state.name}\n")

    return callback


def pause_at(trial: int, epoch: int):
    """A pause rule for tests: pause the study when `trial` finishes `epoch` (zero-based)."""
    return lambda context: (
        f"rule: test pause at trial {trial} epoch {epoch}"
        if (context.trial_number, context.epoch) == (trial, epoch) else None
    )


def best_at_second_epoch(trial: optuna.Trial, loop: TrialLoop) -> float:
    """A linear model trained every epoch whose metric is best at epoch 1 and worse after.

    Its weights after epoch 1 are also saved to `$INTERMISSION_TEST_WEIGHTS/trial-N.pt`,
    to compare with what the checkpoints kept.
    """
    x = trial.suggest_float("x", 0.0, 1.0)
    model = nn.Linear(8, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    inputs = torch.randn(32, 8, generator=torch.Generator().manual_seed(trial.number))
    for epoch in loop.epochs(model, optimizer):
        optimizer.zero_grad()
        model(inputs).pow(2).mean().backward()
        optimizer.step()
        if epoch == 1:
            torch.save(model.state_dict(), f"{os.environ['INTERMISSION_TEST_WEIGHTS']}/trial-{trial.number}.pt")
        loop.end_epoch(x if epoch == 1 else x + 1 + epoch)
    return loop.best_metric


def stepped_classifier(trial: optuna.Trial, loop: TrialLoop) -> float:
    """`classifier` written to pause within an epoch: its loader made by the loop, its epoch's
    running loss kept in `extra_state` (`objective_params["workers"]` data-loading workers)."""
    lr = trial.suggest_float("lr", 1e-3, 0.3, log=True)
    hidden = trial.suggest_int("hidden", 4, 32)
    model = nn.Sequential(nn.Linear(8, hidden), nn.ReLU(), nn.Dropout(0.2), nn.Linear(hidden, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    loader = loop.data_loader(
        _dataset(), batch_size=32, shuffle=True, num_workers=loop.objective_params.get("workers", 0)
    )
    loss_fn = nn.BCEWithLogitsLoss()
    for _epoch in loop.epochs(model, optimizer):
        model.train()
        for x, y in loader:
            optimizer.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            optimizer.step()
            loop.extra_state["loss_sum"] = loop.extra_state.get("loss_sum", 0.0) + loss.item()
            loop.step()
        loop.end_epoch(loop.extra_state.pop("loss_sum") / len(loader))
    return loop.best_metric


def slow_stepped_classifier(trial: optuna.Trial, loop: TrialLoop) -> float:
    """`stepped_classifier` with each step stretched by `INTERMISSION_TEST_STEP_SECONDS` (0.2 s),
    so that a pause or a kill lands within an epoch."""
    original_step = loop.step
    seconds = float(os.environ.get("INTERMISSION_TEST_STEP_SECONDS", "0.2"))

    def step(n: int = 1) -> None:
        time.sleep(seconds)
        original_step(n)

    loop.step = step  # type: ignore[method-assign]
    return stepped_classifier(trial, loop)


class _TornDownMark:
    """Writes its file when the interpreter tears its modules down and finalizes it."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._write = os.open, os.close, os.O_CREAT | os.O_WRONLY  # modules may be gone by then

    def __del__(self) -> None:
        open_, close, flags = self._write
        close(open_(self.path, flags))


_exit_marks: list[_TornDownMark] = []


def _touch(path: str) -> None:
    with open(path, "w"):
        pass


def slow_classifier_with_exit_marks(trial: optuna.Trial, loop: TrialLoop) -> float:
    """`slow_classifier` in a process that leaves marks in `INTERMISSION_TEST_EXIT_DIR`: an
    `atexit` hook's (`exit-hook-<pid>`), and an object's finalized when the interpreter tears
    its modules down (`torn-down-<pid>`)."""
    import atexit

    if not _exit_marks:
        folder, pid = os.environ["INTERMISSION_TEST_EXIT_DIR"], os.getpid()
        atexit.register(_touch, f"{folder}/exit-hook-{pid}")
        _exit_marks.append(_TornDownMark(f"{folder}/torn-down-{pid}"))
    return slow_classifier(trial, loop)
