"""Hugging Face `Trainer` trials pause within an epoch and resume exactly (issue 13, item 5).

Tiny models built from a config, generated data; nothing is downloaded.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import optuna
import pytest
import torch
from transformers import BertForSequenceClassification, Trainer

from prefect_intermission import (
    CheckpointError,
    CheckpointStore,
    ConfigurationError,
    PauseSignal,
    TrialLoop,
    TrialPaused,
    _deprecation,
    optimize_study,
)
from prefect_intermission.cli.best import export_best
from prefect_intermission.integrations._checkpoint_folder import pack_folder, unpack_folder
from prefect_intermission.integrations.transformers import IntermissionCallback
from prefect_intermission.study.state import TRIAL_EPOCH_SECONDS_ATTR, TRIAL_RESUMPTIONS_ATTR, pause_history
from prefect_intermission.training._rng import seed_everything
from tests.transformers_objectives import classifier, tiny_bert, token_data
from tests.writers import writer_threads

pytestmark = [
    # Raised inside Transformers and PEFT by their own calls, on every training run.
    pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing.*:FutureWarning"),
]
in_a_study_run = pytest.mark.usefixtures("prefect_server")

OBJECTIVE = "tests.transformers_objectives:classifier"


def _run(root, *, objective_params=None, **overrides):
    return optimize_study(**{
        "study_name": "hf", "objective": OBJECTIVE, "n_trials": 3, "max_epochs": 2,
        "storage": f"sqlite:///{root}/s.db", "checkpoints": str(root / "ckpt"), "seed": 3,
        "objective_params": objective_params or {}, **overrides,
    })


def _study(root) -> optuna.Study:
    return optuna.load_study(study_name="hf", storage=f"sqlite:///{root}/s.db")


def _trials(study: optuna.Study) -> list[tuple]:
    """What makes two studies the same, trial by trial."""
    return [(t.number, t.state.name, t.params, t.intermediate_values, t.values) for t in study.trials]


def _final_weights(root, number: int) -> dict[str, torch.Tensor]:
    """The weights in the trial's last checkpoint (its last epoch's, once it completed)."""
    loaded = CheckpointStore(str(root / "ckpt")).for_trial("hf", number).load_latest_valid()
    assert loaded.state is not None and not loaded.fallbacks
    return loaded.state["components"]["model"]


def _assert_same_weights(paused, straight, trials: int) -> None:
    for number in range(trials):
        a, b = _final_weights(paused, number), _final_weights(straight, number)
        assert a.keys() == b.keys()
        different = [k for k in a if not torch.equal(a[k], b[k])]
        assert different == [], f"trial {number}: {different}"


@in_a_study_run
def test_a_trainer_paused_at_an_epoch_end_and_within_an_epoch_continues_bit_for_bit(tmp_path):
    straight = tmp_path / "straight"
    assert _run(straight)["status"] == "completed"

    paused = tmp_path / "paused"
    # Trial 1 asks for a pause after optimizer step 8: the third of its second epoch's 6 steps.
    params = {"pause": {"trial": 1, "step": 8}}
    at_epoch_end = [{"rule": "tests.objectives:pause_at", "trial": 0, "epoch": 0}]
    assert _run(paused, objective_params=params, pause_rules=at_epoch_end)["status"] == "paused"
    assert _run(paused, objective_params=params)["status"] == "paused"
    history = pause_history(_study(paused))
    assert [h["trials"] for h in history] == [{"0": 0}, {"1": 0}]  # epochs finished when each paused
    stored = CheckpointStore(str(paused / "ckpt")).for_trial("hf", 1).entries()
    assert [(e["epoch"], e.get("mid_epoch", False)) for e in stored] == [(0, False), (1, True)]
    # It continues "1 of 2 epochs done, and 2 steps into epoch 2", as every trainer says it.
    mid = CheckpointStore(str(paused / "ckpt")).for_trial("hf", 1).load_latest_valid().state
    assert mid["steps_into_epoch"] == 2
    assert _run(paused, objective_params=params)["status"] == "completed"

    assert _trials(_study(paused)) == _trials(_study(straight))
    _assert_same_weights(paused, straight, trials=3)
    # What `intermission status` shows of them: each continued after a pause, from its first
    # epoch's end; the wall time of each of its epochs.
    attrs = {t.number: t.system_attrs for t in _study(paused).trials}
    resumed = {
        n: [(r["reason"], r["from_epoch"]) for r in a.get(TRIAL_RESUMPTIONS_ATTR, [])] for n, a in attrs.items()
    }
    assert resumed == {0: [("pause", 0)], 1: [("pause", 0)], 2: []}
    seconds = [a[TRIAL_EPOCH_SECONDS_ATTR] for a in attrs.values()]
    assert all(len(s) == 2 and min(s) > 0 for s in seconds)

    # `intermission best` writes the best epoch's model, which from_pretrained loads
    # (tests/integration/test_best_transformers.py checks its weights and outputs).
    best = _study(paused).best_trial
    exported = export_best(
        "hf", str(tmp_path / "best-model"), storage=f"sqlite:///{paused}/s.db", checkpoints=str(paused / "ckpt"),
    )
    best_epoch = min(best.intermediate_values, key=best.intermediate_values.get)
    assert (exported.trial, exported.epoch) == (best.number, best_epoch)
    loaded = BertForSequenceClassification.from_pretrained(exported.path)
    tiny_bert(0.0).load_state_dict(loaded.state_dict())  # strict: every weight of the model, and no other


@in_a_study_run
def test_a_lora_adapter_paused_within_an_epoch_continues_bit_for_bit(tmp_path):
    settings = {"n_trials": 2}
    straight = tmp_path / "straight"
    assert _run(straight, objective_params={"lora": True}, **settings)["status"] == "completed"

    paused = tmp_path / "paused"
    params = {"lora": True, "pause": {"trial": 0, "step": 9}}
    assert _run(paused, objective_params=params, **settings)["status"] == "paused"
    assert _run(paused, objective_params=params, **settings)["status"] == "completed"

    assert _trials(_study(paused)) == _trials(_study(straight))
    _assert_same_weights(paused, straight, trials=2)
    adapter = _final_weights(paused, 0)
    assert any("lora_A" in k for k in adapter) and not any("word_embeddings" in k for k in adapter)


@in_a_study_run
def test_the_pruner_stops_a_trainer_after_the_epoch_it_reported(tmp_path):
    pruner = {"name": "ThresholdPruner", "upper": 0.0}  # every loss is above it
    assert _run(tmp_path, pruner=pruner, n_trials=2)["status"] == "completed"
    study = _study(tmp_path)
    assert [t.state.name for t in study.trials] == ["PRUNED", "PRUNED"]
    assert [list(t.intermediate_values) for t in study.trials] == [[0], [0]]


# ---- One trial driven directly, as the study drives its attempts -------------------------------

SEED = 5


def _attempt(
    study: optuna.Study, store: CheckpointStore, objective_params: dict, **loop_settings
) -> tuple[TrialLoop, object]:
    """One attempt of the study's only trial; the loop, and the value, `TrialPaused` or
    `RuntimeError` it ended with."""
    seed_everything(SEED)  # as the study does before every attempt
    trial = optuna.Trial(study, study.trials[0]._trial_id)
    loop = TrialLoop(
        trial, store.for_trial("direct", 0), seed=SEED, pause_signal=PauseSignal(),
        objective_params=objective_params, **{"max_epochs": 2, **loop_settings},
    )
    try:
        return loop, classifier(trial, loop)
    except (TrialPaused, RuntimeError) as stopped:
        return loop, stopped


def _new_study() -> optuna.Study:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.ask()
    return study


def test_a_damaged_step_checkpoint_is_skipped_and_the_epochs_one_continues_exactly(tmp_path, caplog):
    straight = CheckpointStore(str(tmp_path / "straight"))
    reference = _new_study()
    _loop, value = _attempt(reference, straight, {})

    store = CheckpointStore(str(tmp_path / "paused"))
    study = _new_study()
    _loop, paused = _attempt(study, store, {"pause": {"trial": 0, "step": 8}})
    assert isinstance(paused, TrialPaused) and paused.epoch == 0
    trial = store.for_trial("direct", 0)
    damaged = trial.path(1, mid_epoch=True)
    with open(damaged, "r+b") as f:  # a few bytes in the middle of the step checkpoint change
        f.seek(os.path.getsize(damaged) // 2)
        f.write(b"\x00\xff" * 8)

    with caplog.at_level(logging.WARNING):
        loop, resumed = _attempt(study, store, {})
    assert "skipping checkpoint of epoch 1" in caplog.text
    assert loop.resumed_from_epoch == 0  # from the first epoch's checkpoint, not from scratch
    assert resumed == value
    assert study.trials[0].intermediate_values == reference.trials[0].intermediate_values
    a = trial.load_latest_valid().state["components"]["model"]
    b = straight.for_trial("direct", 0).load_latest_valid().state["components"]["model"]
    assert all(torch.equal(a[k], b[k]) for k in a) and a.keys() == b.keys()


def test_step_checkpoints_every_n_steps_bound_what_a_crash_loses(tmp_path):
    every_4_steps = {"arguments": {"save_strategy": "steps", "save_steps": 4}}
    reference = _new_study()
    _loop, value = _attempt(reference, CheckpointStore(str(tmp_path / "straight")), every_4_steps)

    store = CheckpointStore(str(tmp_path / "crashed"))
    study = _new_study()
    _loop, crashed = _attempt(study, store, {**every_4_steps, "crash_at_step": 11})
    assert isinstance(crashed, RuntimeError)
    assert study.trials[0].intermediate_values == {0: reference.trials[0].intermediate_values[0]}
    latest = store.for_trial("direct", 0).load_latest_valid()
    assert (latest.epoch, latest.state["global_step"]) == (1, 8)  # within the second epoch of 6 steps
    loop, resumed = _attempt(study, store, every_4_steps)  # trains steps 9 and 10 again
    assert loop.resumed_from_epoch == 0
    assert resumed == value
    assert study.trials[0].intermediate_values == reference.trials[0].intermediate_values
    a = store.for_trial("direct", 0).load_latest_valid().state["components"]["model"]
    straight = CheckpointStore(str(tmp_path / "straight")).for_trial("direct", 0)
    b = straight.load_latest_valid().state["components"]["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_patience_stops_a_trainer_that_no_longer_improves_and_a_rerun_does_not_train_on(tmp_path):
    store = CheckpointStore(str(tmp_path))
    study = _new_study()
    settings = {"max_epochs": 4, "patience": 2}
    _loop, value = _attempt(study, store, {"metric": "constant"}, **settings)  # 1.0 after every epoch
    assert value == 1.0
    assert study.trials[0].intermediate_values == {0: 1.0, 1: 1.0, 2: 1.0}  # 2 epochs without a better one
    trial = store.for_trial("direct", 0)
    assert trial.epochs() == [0, 1, 2]  # the best (the first) and the two last: no fourth epoch

    # The process stopped before Optuna heard the value: the trial is run again, and trains no more.
    _loop, again = _attempt(study, store, {"metric": "constant"}, **settings)
    assert again == 1.0 and trial.epochs() == [0, 1, 2]


def _trainer(
    tmp_path, *, direction: str = "minimize", callback: dict | None = None, compute_metrics=None, **arguments
) -> tuple[IntermissionCallback, Trainer]:
    study = optuna.create_study(direction=direction)
    study.ask()
    loop = TrialLoop(optuna.Trial(study, study.trials[0]._trial_id),
                     CheckpointStore(str(tmp_path)).for_trial("direct", 0), max_epochs=2, seed=SEED,
                     direction=direction)
    pausable = IntermissionCallback(loop, **(callback or {}))
    args = pausable.training_arguments(use_cpu=True, disable_tqdm=True, **arguments)
    return pausable, Trainer(model=tiny_bert(0.0), args=args, train_dataset=token_data(8, 0),
                             eval_dataset=token_data(8, 1), callbacks=[pausable], compute_metrics=compute_metrics)


def _confidence(prediction) -> dict[str, float]:
    """The mean probability the model gives the right label: greater is better, and it moves every step."""
    probabilities = torch.softmax(torch.as_tensor(prediction.predictions), dim=-1)
    right = probabilities[torch.arange(len(probabilities)), torch.as_tensor(prediction.label_ids)]
    return {"confidence": float(right.mean())}


@pytest.mark.parametrize(
    ("callback", "arguments", "reported"),
    [
        ({"metric_for_best_model": "confidence"}, {}, "eval_confidence"),
        ({"metric_for_best_model": "eval_confidence"}, {}, "eval_confidence"),
        ({"metric": "confidence"}, {}, "eval_confidence"),  # the earlier name
        ({}, {"metric_for_best_model": "confidence"}, "eval_confidence"),  # the Trainer's own, when given none
        ({"metric_for_best_model": "loss"}, {"metric_for_best_model": "confidence"}, "eval_loss"),  # the callback's first
    ],
)
def test_the_metric_is_named_as_metric_for_best_model_names_it(tmp_path, callback, arguments, reported):
    direction = "minimize" if reported == "eval_loss" else "maximize"
    pausable, trainer = _trainer(
        tmp_path, direction=direction, callback=callback, compute_metrics=_confidence, learning_rate=0.01,
        **arguments,
    )
    value = pausable.train(trainer)

    evaluated = [entry[reported] for entry in trainer.state.log_history if reported in entry]
    assert len(evaluated) == 2 and evaluated[0] != evaluated[1] and pausable.metric == reported
    study = pausable.context.trial.study
    assert study.trials[0].intermediate_values == {0: evaluated[0], 1: evaluated[1]}  # what Optuna heard
    assert value == (min if direction == "minimize" else max)(evaluated)


def test_a_metric_named_twice_or_compared_the_other_way_is_refused(tmp_path):
    study = _new_study()
    trial = optuna.Trial(study, study.trials[0]._trial_id)
    loop = TrialLoop(trial, CheckpointStore(str(tmp_path)).for_trial("direct", 0), max_epochs=2, seed=SEED)
    with pytest.raises(ConfigurationError, match="metric_for_best_model and metric name the same metric; pass one"):
        IntermissionCallback(loop, metric_for_best_model="loss", metric="eval_loss")

    # The study minimizes; the Trainer's arguments say a greater confidence is better.
    pausable, trainer = _trainer(tmp_path / "1", compute_metrics=_confidence, metric_for_best_model="confidence")
    with pytest.raises(ConfigurationError) as refused:
        pausable.train(trainer)
    assert (
        "greater_is_better=True for metric_for_best_model='confidence', but the study's direction is "
        "'minimize': run the study with direction='maximize', or set greater_is_better=False"
    ) in str(refused.value)
    assert trainer.state.global_step == 0

    pausable, trainer = _trainer(tmp_path / "2", callback={"metric_for_best_model": "f1"}, compute_metrics=_confidence)
    with pytest.raises(ConfigurationError, match=r"The metric reported to Optuna, 'eval_f1', is not among the "
                       r"evaluation metrics \['eval_confidence', 'eval_loss'"):
        pausable.train(trainer)


def test_arguments_a_pause_could_not_survive_are_refused_before_training(tmp_path):
    pausable, trainer = _trainer(tmp_path, num_train_epochs=5, save_only_model=True)
    with pytest.raises(ConfigurationError) as refused:
        pausable.train(trainer)
    assert "num_train_epochs must be the study's max_epochs (2), but got 5" in str(refused.value)
    assert "save_only_model leaves out the optimizer and RNG states a resume needs" in str(refused.value)
    assert trainer.state.global_step == 0


def test_a_trainer_started_without_looking_for_the_checkpoint_is_refused(tmp_path):
    _pausable, trainer = _trainer(tmp_path, output_dir=str(tmp_path / "output"))
    with pytest.raises(ConfigurationError, match=r"Train with pausable.train\(trainer\)"):
        trainer.train()
    assert trainer.state.global_step == 0


def test_a_trainer_trained_by_hand_ends_with_outcome_and_finish_still_works_warning_once(tmp_path, monkeypatch):
    monkeypatch.setattr(_deprecation, "_warned", set())  # as in a fresh process
    pausable, trainer = _trainer(tmp_path, output_dir=str(tmp_path / "output"))
    trainer.train(resume_from_checkpoint=pausable.resume_from_checkpoint(trainer.args.output_dir))

    best = pausable.outcome()
    assert best == min(entry["eval_loss"] for entry in trainer.state.log_history if "eval_loss" in entry)
    with pytest.warns(FutureWarning, match=r"IntermissionCallback.finish\(\) is deprecated; use "
                      r"IntermissionCallback.outcome\(\) instead") as warned:
        assert pausable.finish() == best
    assert [w.filename for w in warned] == [__file__]  # it points at the objective's line
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert pausable.finish() == best  # once per process


def test_a_checkpoint_folder_comes_back_byte_for_byte_and_stays_inside_its_folder(tmp_path):
    folder = tmp_path / "checkpoint-8"
    tiny_bert(0.1).save_pretrained(folder)  # model.safetensors and config.json
    (folder / "adapter" / "nested").mkdir(parents=True)
    (folder / "adapter" / "nested" / "optimizer.pt").write_bytes(bytes(range(256)) * 3)
    (folder / "empty.txt").write_bytes(b"")
    (folder / "training_args.bin").write_bytes(b"a pickle")
    store = CheckpointStore(str(tmp_path / "store")).for_trial("folders", 0)
    store.save(0, pack_folder(folder), mid_epoch=True)  # through torch.save and a verified load

    state = store.load_latest_valid().state
    assert set(state["components"]["model"]) == set(tiny_bert(0.1).state_dict())  # for `intermission best`
    back = unpack_folder(state, tmp_path / "back")
    kept = sorted(
        p.relative_to(folder) for p in folder.rglob("*") if p.is_file() and p.name != "training_args.bin"
    )
    assert sorted(p.relative_to(back) for p in back.rglob("*") if p.is_file()) == kept
    assert all((back / name).read_bytes() == (folder / name).read_bytes() for name in kept)

    state["files"]["../outside.txt"] = state["files"]["empty.txt"]
    with pytest.raises(CheckpointError, match="names a file outside its folder: '../outside.txt'"):
        unpack_folder(state, tmp_path / "again")
    assert not (tmp_path / "outside.txt").exists() and not (tmp_path / "again").exists()


def test_without_the_extra_the_import_names_it():
    code = textwrap.dedent(
        """
        import sys
        import prefect_intermission.integrations
        assert "transformers" not in sys.modules  # the subpackage itself loads no integration
        sys.modules["transformers"] = None  # as if it were not installed
        import prefect_intermission.integrations.transformers
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "needs Hugging Face Transformers: pip install 'prefect-intermission[transformers]'" in done.stderr


def test_a_trainers_checkpoints_are_written_off_the_training_thread(tmp_path, monkeypatch):
    writers = writer_threads(monkeypatch)
    pausable, trainer = _trainer(tmp_path / "hf", num_train_epochs=2)
    pausable.train(trainer)
    assert len(writers) == 2 and all(name.startswith("intermission-writer-") for name in writers), writers
    assert pausable.context.checkpoints.last_epoch() == 1  # both stored once train() returned
