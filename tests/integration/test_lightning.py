"""PyTorch Lightning: a trial trained by `lightning.Trainer` pauses within an epoch and continues
exactly, reports to Optuna and is pruned by it, and checkpoints only what loads back safely.

A study paused mid-epoch and run again must be the study that never paused, trial by trial,
and every trial's final weights must be the same bit for bit.
"""

from __future__ import annotations

import pathlib
import signal
import subprocess
import sys
from typing import Any

import lightning as L
import optuna
import pytest
import torch
from optuna.trial import TrialState

from prefect_intermission import CheckpointError, CheckpointStore, ConfigurationError, PauseSignal, TrialLoop
from prefect_intermission import TrialPaused, optimize_study
from prefect_intermission.cli.commands import main
from prefect_intermission.integrations.lightning import IntermissionCallback, fit
from prefect_intermission.study.state import TRIAL_EPOCH_SECONDS_ATTR, TRIAL_RESUMPTIONS_ATTR, pause_history
from prefect_intermission.training._rng import seed_everything
from tests.lightning_objectives import MLP, QUIET, STEPS_PER_EPOCH, _data, classifier
from tests.writers import writer_threads

pytestmark = [
    # Lightning's advice for real training (more data-loading workers, a larger logging interval).
    pytest.mark.filterwarnings("ignore::lightning.fabric.utilities.warnings.PossibleUserWarning"),
    # Lightning 2.6 on torch 2.13's pytree: a deprecation of theirs.
    pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning"),
]

MAX_EPOCHS = 3


def _trial(tmp_path, name: str, **objective_params: Any) -> dict[str, Any]:
    """Train trial 0 of a new study to its end, attempt after attempt as the study does (fresh
    objects, the global generators seeded anew); what came of it."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    store = CheckpointStore(str(tmp_path / "ckpt"))
    study = optuna.create_study(
        study_name=name, storage=f"sqlite:///{tmp_path}/{name}.db", sampler=optuna.samplers.RandomSampler(seed=3),
    )
    trial_id = study.ask()._trial_id
    paused, models = [], []
    while True:
        seed_everything(5)
        trial = optuna.Trial(study, trial_id)
        loop = TrialLoop(
            trial, store.for_trial(name, 0), max_epochs=MAX_EPOCHS, seed=11, pause_signal=_signal(),
            objective_params=objective_params,
        )
        try:
            value = classifier(trial, loop, trained=models)
            break
        except TrialPaused as stopped:
            paused.append(stopped.epoch)
    return {
        "reports": study.trials[0].intermediate_values,
        "value": value,
        "weights": store.for_trial(name, 0).load_latest_valid().state["state_dict"],
        "paused_after": paused,
        "validated_batches": sum(m.validated_batches for m in models),
    }


_current_signal: list[PauseSignal] = []


def _signal() -> PauseSignal:
    """A new pause signal, which a SIGTERM handler of the test's can reach."""
    _current_signal[:] = [PauseSignal()]
    return _current_signal[0]


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> dict[str, Any]:
    return _trial(tmp_path_factory.mktemp("straight"), "straight")


def _same(result: dict[str, Any], straight: dict[str, Any]) -> None:
    assert result["reports"] == straight["reports"]
    assert result["value"] == straight["value"]
    assert result["weights"].keys() == straight["weights"].keys()
    assert all(torch.equal(result["weights"][k], straight["weights"][k]) for k in straight["weights"])
    assert result["validated_batches"] == straight["validated_batches"]  # no validation added by the pause


@pytest.mark.parametrize("step", [3, STEPS_PER_EPOCH + 3], ids=["first-epoch", "second-epoch"])
def test_a_trial_paused_within_an_epoch_continues_bit_identically(tmp_path, straight, step):
    result = _trial(tmp_path, "paused", pause_at={"trial": 0, "step": step})
    assert result["paused_after"] == [step // STEPS_PER_EPOCH - 1]  # paused in the epoch after that one
    _same(result, straight)


def test_with_a_plain_data_loader_the_pause_waits_for_the_epoch_end(tmp_path):
    reference = _trial(tmp_path / "straight", "straight", plain_loader=True)
    result = _trial(tmp_path / "paused", "paused", plain_loader=True, pause_at={"trial": 0, "step": 3})
    assert result["paused_after"] == [0]
    _same(result, reference)


@pytest.mark.parametrize(
    ("loader", "step", "paused_after"), [("resumable", STEPS_PER_EPOCH + 3, 0), ("plain", 3, 0)],
    ids=["mid-epoch", "epoch-end"],
)
def test_a_plateau_schedule_continues_exactly(tmp_path, loader, step, paused_after):
    """Lightning steps ReduceLROnPlateau after the hook that checkpoints an epoch, and not for an
    epoch it continues: the callback takes those steps itself."""
    settings = {"plateau": True, "plain_loader": loader == "plain"}
    reference = _trial(tmp_path / "straight", "straight", **settings)
    result = _trial(tmp_path / "paused", "paused", pause_at={"trial": 0, "step": step}, **settings)
    assert result["paused_after"] == [paused_after]
    _same(result, reference)


def test_sigterm_on_the_main_thread_pauses_the_trial_instead_of_ending_the_process(tmp_path, straight):
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: _current_signal[0].request("signal: SIGTERM"))
    try:
        result = _trial(tmp_path, "terminated", sigterm_at=5)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert result["paused_after"] == [-1]
    _same(result, straight)


def _loop(tmp_path, max_epochs: int = MAX_EPOCHS, **options: Any) -> TrialLoop:
    study = optuna.create_study(storage=f"sqlite:///{tmp_path}/s.db", study_name="s")
    return TrialLoop(
        study.ask(), CheckpointStore(str(tmp_path / "ckpt")).for_trial("s", 0), max_epochs=max_epochs, seed=0,
        **options,
    )


class _Stalled(MLP):
    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self.log("val_loss", 1.0)


def test_the_study_patience_stops_a_lightning_trial_early(tmp_path):
    loop = _loop(tmp_path, max_epochs=5, patience=2)
    train, val = _data()
    value = fit(loop, _Stalled(0.1, 4), train_dataloaders=torch.utils.data.DataLoader(train, batch_size=64),
                val_dataloaders=torch.utils.data.DataLoader(val), **QUIET)
    assert value == 1.0
    assert loop.trial.study.trials[0].intermediate_values == {0: 1.0, 1: 1.0, 2: 1.0}
    assert loop.checkpoints.last_epoch() == 2


def test_without_lightning_the_integration_says_which_extra_to_install():
    code = "import sys; sys.modules['lightning'] = None; import prefect_intermission.integrations.lightning"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "ImportError: prefect_intermission.integrations.lightning needs PyTorch Lightning" in done.stderr
    assert "pip install 'prefect-intermission[lightning]'" in done.stderr


def test_a_trainer_with_other_epochs_than_the_study_is_refused(tmp_path):
    loop = _loop(tmp_path)
    train, val = _data()
    with pytest.raises(ConfigurationError, match=r"max_epochs must be the study's, 3 \(loop.max_epochs\), but got max_epochs=5"):
        fit(loop, MLP(0.1, 4), train_dataloaders=torch.utils.data.DataLoader(train), max_epochs=5, **QUIET)


class _PathModule(MLP):
    def __init__(self, lr: float, hidden: int, data: pathlib.Path) -> None:
        super().__init__(lr, hidden)
        self.save_hyperparameters()


def test_a_checkpoint_that_would_not_load_with_weights_only_is_refused_when_written(tmp_path):
    loop = _loop(tmp_path)
    train, val = _data()
    with pytest.raises(CheckpointError, match=r"pathlib.PosixPath at 'hyper_parameters.data'.*add_safe_globals"):
        fit(
            loop, _PathModule(0.1, 4, tmp_path), train_dataloaders=torch.utils.data.DataLoader(train, batch_size=64),
            val_dataloaders=torch.utils.data.DataLoader(val), **QUIET,
        )
    assert loop.checkpoints.entries() == []


def test_a_trial_with_a_checkpoint_is_not_trained_afresh_by_mistake(tmp_path):
    loop = _loop(tmp_path, max_epochs=1)
    train, val = _data()
    loaders = torch.utils.data.DataLoader(train, batch_size=64), torch.utils.data.DataLoader(val)
    fit(loop, MLP(0.1, 4), train_dataloaders=loaders[0], val_dataloaders=loaders[1], **QUIET)
    again = IntermissionCallback(TrialLoop(loop.trial, loop.checkpoints, max_epochs=1, seed=0))
    trainer = L.Trainer(max_epochs=1, callbacks=[again], **QUIET)
    with pytest.raises(ConfigurationError, match=r"has a checkpoint to continue from: pass trainer.fit\(\.\.\., ckpt_path=callback.ckpt_path\(\)\)"):
        trainer.fit(MLP(0.1, 4), *loaders)


# --- Through the study flow ----------------------------------------------------------------


def _run(tmp_path, **overrides: Any) -> dict[str, Any]:
    return optimize_study(**{
        "study_name": "lightning", "objective": "tests.lightning_objectives:classifier", "n_trials": 3,
        "max_epochs": MAX_EPOCHS, "max_concurrent_trials": 1, "seed": 7,
        "storage": f"sqlite:///{tmp_path}/s.db", "checkpoints": str(tmp_path / "ckpt"), **overrides,
    })


def _study(tmp_path) -> optuna.Study:
    return optuna.load_study(study_name="lightning", storage=f"sqlite:///{tmp_path}/s.db")


def _final_weights(tmp_path, trial: int) -> dict[str, torch.Tensor]:
    return CheckpointStore(str(tmp_path / "ckpt")).for_trial("lightning", trial).load_latest_valid().state["state_dict"]


@pytest.mark.usefixtures("prefect_server")
def test_a_lightning_study_paused_mid_epoch_and_resumed_is_the_uninterrupted_one(tmp_path):
    assert _run(tmp_path / "straight")["status"] == "completed"
    straight = _study(tmp_path / "straight")

    paused = tmp_path / "paused"
    settings = {"objective_params": {"pause_at": {"trial": 1, "step": STEPS_PER_EPOCH + 3}}}
    assert _run(paused, **settings)["status"] == "paused"
    assert pause_history(_study(paused))[0]["trials"] == {"1": 0}  # one epoch done, in the second
    checkpoints = CheckpointStore(str(paused / "ckpt")).for_trial("lightning", 1)
    assert [(e["epoch"], bool(e.get("mid_epoch"))) for e in checkpoints.entries()][-1] == (1, True)
    assert _run(paused, **settings)["status"] == "completed"

    resumed = _study(paused)
    trials = [(t.number, t.state.name, t.params, t.intermediate_values, t.values) for t in resumed.trials]
    assert trials == [(t.number, t.state.name, t.params, t.intermediate_values, t.values) for t in straight.trials]
    assert all(len(t.intermediate_values) == MAX_EPOCHS for t in resumed.trials)
    continued = resumed.trials[1].system_attrs
    assert [(r["reason"], r["from_epoch"], r["lost_epochs"]) for r in continued[TRIAL_RESUMPTIONS_ATTR]] == [
        ("pause", 0, [])
    ]
    assert len(continued[TRIAL_EPOCH_SECONDS_ATTR]) == MAX_EPOCHS  # the paused epoch counted once
    for number in range(3):
        expected, got = _final_weights(tmp_path / "straight", number), _final_weights(paused, number)
        assert all(torch.equal(got[k], expected[k]) for k in expected)

    # `intermission best` writes the best epoch's weights, a state_dict the LightningModule loads.
    best = resumed.best_trial
    output = tmp_path / "model.pt"
    assert main(["best", "lightning", "--storage", f"sqlite:///{paused}/s.db", "--checkpoints",
                 str(paused / "ckpt"), "--output", str(output)]) == 0
    weights = torch.load(output, weights_only=True)
    MLP(lr=best.params["lr"], hidden=best.params["hidden"]).load_state_dict(weights)  # strict: every weight
    kept = CheckpointStore(str(paused / "ckpt")).for_trial("lightning", best.number).load_best()
    assert kept.epoch == min(best.intermediate_values, key=best.intermediate_values.get)
    assert weights.keys() == kept.state["state_dict"].keys()
    assert all(torch.equal(weights[k], kept.state["state_dict"][k]) for k in weights)


@pytest.mark.usefixtures("prefect_server")
def test_the_pruner_stops_a_lightning_trial_after_its_report(tmp_path):
    result = _run(tmp_path, n_trials=2, pruner={"name": "ThresholdPruner", "upper": 0.01})
    assert result["status"] == "completed" and result["finished_trials"] == 2
    trials = _study(tmp_path).trials
    assert [t.state for t in trials] == [TrialState.PRUNED] * 2
    assert [list(t.intermediate_values) for t in trials] == [[0], [0]]  # reported epoch 0, then stopped


def test_lightnings_checkpoints_are_written_off_the_training_thread(tmp_path, monkeypatch, straight):
    writers = writer_threads(monkeypatch)
    result = _trial(tmp_path, "background", pause_at={"trial": 0, "step": 3})
    assert len(writers) == MAX_EPOCHS + 1  # the mid-epoch one at the pause, then each epoch's
    assert all(name.startswith("intermission-writer-") for name in writers), writers
    _same(result, straight)
