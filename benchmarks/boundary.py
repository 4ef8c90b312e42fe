"""The fixed cost the plugin adds at each epoch boundary, on the demo objective (flows/digits.py).

The demo objective trains through a `TrialLoop` whose `end_epoch` (report to Optuna,
pruning check, checkpoint of the small CNN (a copy taken for the background writer, or
the write itself with background checkpoints off), pause check) is timed, inside a Prefect
flow so that its log line goes to the Prefect API as in a real run. Beside it, in the
same run, what plain Optuna does at an epoch boundary (`trial.report` and
`trial.should_prune`) and the checkpoint write alone.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from prefect import flow

from prefect_intermission import CheckpointStore, PauseSignal, TrialLoop
from prefect_intermission.training.checkpoints import TrialCheckpoints


@dataclass
class _TimedCheckpoints(TrialCheckpoints):
    """Times each checkpoint's write, on the training thread or the background writer's."""

    writes: list[float] = field(default_factory=list)

    def _write(self, epoch: int, state: dict[str, Any], **options: Any) -> str:
        start = time.perf_counter()
        try:
            return super()._write(epoch, state, **options)
        finally:
            self.writes.append(time.perf_counter() - start)


class _TimedLoop(TrialLoop):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.boundaries: list[float] = []
        self.epoch_times: list[float] = []
        self._epoch_started = time.perf_counter()

    def end_epoch(self, metric: float) -> None:
        start = time.perf_counter()
        self.epoch_times.append(start - self._epoch_started)
        try:
            super().end_epoch(metric)
        finally:
            self.boundaries.append(time.perf_counter() - start)
            self._epoch_started = time.perf_counter()


@flow(name="bench-epoch-boundary", persist_result=False)
def _measure(workdir: str, n_trials: int, max_epochs: int) -> dict[str, list[float]]:
    from flows.digits import objective

    study = optuna.create_study(
        study_name="boundary", storage=f"sqlite:///{Path(workdir) / 'boundary.db'}",
        sampler=optuna.samplers.TPESampler(seed=0), pruner=optuna.pruners.NopPruner(),
    )
    store = CheckpointStore(str(Path(workdir) / "checkpoints"))
    out: dict[str, list[float]] = {"boundary": [], "write": [], "epoch": [], "plain": []}
    for _ in range(n_trials):
        trial = study.ask()
        base = store.for_trial("boundary", trial.number)
        checkpoints = _TimedCheckpoints(base.fs, base.folder, base.keep_last)
        loop = _TimedLoop(trial, checkpoints, max_epochs=max_epochs, seed=trial.number, pause_signal=PauseSignal())
        loop._epoch_started = time.perf_counter()
        study.tell(trial, objective(trial, loop))
        out["boundary"] += loop.boundaries
        out["write"] += checkpoints.writes
        out["epoch"] += loop.epoch_times
        # Plain Optuna's epoch boundary, on a trial of the same study and storage.
        plain = study.ask()
        for epoch in range(max_epochs):
            start = time.perf_counter()
            plain.report(0.5, epoch)
            plain.should_prune()
            out["plain"].append(time.perf_counter() - start)
        study.tell(plain, 0.5)
    return out


def measure(workdir: Path, *, n_trials: int, max_epochs: int) -> dict[str, float]:
    """Median milliseconds of the plugin's epoch boundary and of its parts."""
    workdir.mkdir(parents=True, exist_ok=True)
    samples = _measure(str(workdir), n_trials, max_epochs)
    ms = {k: [v * 1000 for v in vs] for k, vs in samples.items()}
    return {
        "value": statistics.median(ms["boundary"]),
        "p90_ms": statistics.quantiles(ms["boundary"], n=10)[-1] if len(ms["boundary"]) > 1 else ms["boundary"][0],
        "checkpoint_write_ms": statistics.median(ms["write"]),
        "plain_optuna_report_ms": statistics.median(ms["plain"]),
        "added_beyond_plain_report_ms": statistics.median(ms["boundary"]) - statistics.median(ms["plain"]),
        "demo_epoch_ms": statistics.median(ms["epoch"]),
        "samples": len(ms["boundary"]),
    }
