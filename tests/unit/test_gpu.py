"""On a CUDA GPU: a trial paused and resumed trains bit for bit like an uninterrupted one
(CUDA dropout masks, mixed precision with a grad scaler), and a pause reports the GPU.

Skipped where there is no CUDA GPU (CI has none); run on a GPU machine with
`python -m pytest tests/unit/test_gpu.py --noconftest`.
"""

from __future__ import annotations

import optuna
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from prefect_intermission import CheckpointStore, TrialLoop, TrialPaused
from prefect_intermission.training._rng import seed_everything
from prefect_intermission.reporting.resources import measure_resources
from tests.signals import PauseAfter

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
MAX_EPOCHS = 5


def _cuda_classifier(trial: optuna.Trial, loop: TrialLoop) -> float:
    """A dropout MLP trained on the GPU in float16 autocast with a grad scaler."""
    lr = trial.suggest_float("lr", 1e-3, 0.1, log=True)
    generator = torch.Generator().manual_seed(1234)
    x = torch.randn(512, 32, generator=generator)
    y = (x[:, :8].sum(dim=1, keepdim=True) > 0).float()
    loader = DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True, generator=loop.generator)
    model = nn.Sequential(nn.Linear(32, 256), nn.ReLU(), nn.Dropout(0.3), nn.Linear(256, 1)).cuda()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
    scaler = torch.amp.GradScaler("cuda")
    loss_fn = nn.BCEWithLogitsLoss()
    for _epoch in loop.epochs(model, optimizer, scheduler, scaler):
        model.train()
        total = 0.0
        for xb, yb in loader:
            optimizer.zero_grad()
            with torch.autocast("cuda", dtype=torch.float16):
                loss = loss_fn(model(xb.cuda()), yb.cuda())
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            loop.step()
            total += loss.item()
        scheduler.step()
        loop.end_epoch(total / len(loader))
    return loop.best_metric


def _study(tmp_path, name):
    return optuna.create_study(
        study_name=name, storage=f"sqlite:///{tmp_path}/{name}.db",
        sampler=optuna.samplers.RandomSampler(seed=3), pruner=optuna.pruners.NopPruner(),
    )


def _loop(trial, store, signal=None):
    return TrialLoop(trial, store.for_trial(trial.study.study_name, trial.number),
                     max_epochs=MAX_EPOCHS, seed=11, pause_signal=signal)


def test_a_trial_paused_on_the_gpu_resumes_bit_for_bit(tmp_path):
    torch.backends.cudnn.deterministic = True
    store = CheckpointStore(str(tmp_path / "ckpt"))

    reference = _study(tmp_path, "reference")
    trial = reference.ask()
    seed_everything(5)
    expected_value = _cuda_classifier(trial, _loop(trial, store))
    expected_curve = reference._storage.get_trial(trial._trial_id).intermediate_values

    paused = _study(tmp_path, "paused")
    trial = paused.ask()
    seed_everything(5)
    with pytest.raises(TrialPaused):
        _cuda_classifier(trial, _loop(trial, store, PauseAfter(2)))
    torch.cuda.manual_seed_all(999)
    torch.rand(7, device="cuda")  # another process's CUDA generator would differ
    seed_everything(5)
    resumed = optuna.Trial(paused, trial._trial_id)
    loop = _loop(resumed, store)
    value = _cuda_classifier(resumed, loop)

    assert loop.resumed_from_epoch == 2
    assert value == expected_value
    assert paused._storage.get_trial(trial._trial_id).intermediate_values == expected_curve
    assert len(expected_curve) == MAX_EPOCHS
    final = {name: store.for_trial(name, 0).load_latest_valid().state for name in ("reference", "paused")}
    for key, tensor in final["reference"]["components"]["model"].items():
        assert torch.equal(tensor, final["paused"]["components"]["model"][key]), key
    assert final["reference"]["components"]["scaler"] == final["paused"]["components"]["scaler"]


def test_a_pause_reports_the_gpu_the_training_process_used():
    held = torch.empty(64 * 2**20, dtype=torch.uint8, device="cuda")
    used = measure_resources()
    [gpu] = [g for g in used["gpus"] if g["index"] == torch.cuda.current_device()]
    assert gpu["name"] == torch.cuda.get_device_name()
    assert gpu["memory_allocated_bytes"] >= held.numel()
    assert gpu["max_memory_allocated_bytes"] >= gpu["memory_allocated_bytes"]
    assert gpu["memory_reserved_bytes"] >= gpu["memory_allocated_bytes"]
    assert gpu["utilization_percent"] is None or 0 <= gpu["utilization_percent"] <= 100
