"""One side of the overhead benchmark, run in a process of its own so its peak memory is its own.

    python -m benchmarks.overhead plain|plugin|in-flow WORKDIR N_TRIALS MAX_EPOCHS SEED

`in-flow` is the plain study run inside a bare Prefect flow: what Prefect alone adds, to
tell it from what the plugin adds.
    python -m benchmarks.overhead calibrate EPOCH_SECONDS   # prints steps per epoch

Prints one JSON line: wall and CPU seconds of the study, the process's peak RSS, and
`startup_s`, from the process's creation to the study's start (interpreter and imports).
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from functools import partial
from pathlib import Path


def _cpu_seconds() -> float:
    """User + system CPU time of this process, all its threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _since_process_start() -> float:
    """Seconds since this process was created (interpreter start and imports included).

    Read from /proc (Linux), not psutil: the plain side's memory must not grow for it.
    """
    fields = Path("/proc/self/stat").read_text().rpartition(")")[2].split()
    started = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22: start time after boot
    return time.clock_gettime(time.CLOCK_BOOTTIME) - started


def main(kind: str, workdir: str, n_trials: int, max_epochs: int, seed: int) -> dict[str, float]:
    import optuna

    from benchmarks.objectives import plain_objective

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = f"sqlite:///{Path(workdir) / f'{kind}.db'}"
    if kind == "plugin":
        from prefect_intermission import optimize_study  # imported before the clocks start

        per_epoch = _count_per_epoch_costs()
    elif kind == "in-flow":
        from prefect import flow
    startup = _since_process_start()
    cpu_start = _cpu_seconds()
    if kind == "plain":
        start = time.perf_counter()
        study = optuna.create_study(
            study_name="overhead", storage=storage, direction="minimize",
            sampler=optuna.samplers.TPESampler(seed=seed), pruner=optuna.pruners.NopPruner(),
        )
        study.optimize(partial(plain_objective, max_epochs=max_epochs), n_trials=n_trials)
        wall = time.perf_counter() - start
    elif kind == "plugin":
        start = time.perf_counter()
        optimize_study(
            study_name="overhead", objective="benchmarks.objectives:plugin_objective",
            n_trials=n_trials, max_epochs=max_epochs, seed=seed, storage=storage,
            checkpoints=str(Path(workdir) / "checkpoints"), pruner="none",
        )
        wall = time.perf_counter() - start
        study = optuna.load_study(study_name="overhead", storage=storage)
    elif kind == "in-flow":
        def plain_study() -> None:
            study = optuna.create_study(
                study_name="overhead", storage=storage, direction="minimize",
                sampler=optuna.samplers.TPESampler(seed=seed), pruner=optuna.pruners.NopPruner(),
            )
            study.optimize(partial(plain_objective, max_epochs=max_epochs), n_trials=n_trials)

        start = time.perf_counter()
        flow(name="plain-optuna", persist_result=False)(plain_study)()
        wall = time.perf_counter() - start
        study = optuna.load_study(study_name="overhead", storage=storage)
    else:
        raise SystemExit(f"kind must be 'plain', 'plugin' or 'in-flow', not {kind!r}")
    finished = [t for t in study.trials if t.state.is_finished()]
    assert len(finished) == n_trials, f"{kind}: {len(finished)} trials finished, expected {n_trials}"
    costs = {} if kind != "plugin" else {
        "end_epoch_ms": 1000 * per_epoch["end_epoch_s"] / max(1, per_epoch["epochs"]),
        "writer_cpu_ms": 1000 * per_epoch["writer_s"] / max(1, per_epoch["epochs"]),
    }
    return {
        **costs,
        "wall_s": wall,
        "startup_s": startup,
        "cpu_s": _cpu_seconds() - cpu_start,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "params": [t.params for t in finished],
    }


def _count_per_epoch_costs() -> dict[str, float]:
    """From now on, count the thread CPU time of each `TrialLoop.end_epoch` (on the training
    thread) and of each background checkpoint write (on its writer thread): what an epoch
    costs, free of the wall-clock noise of the whole run."""
    from prefect_intermission.training import _background
    from prefect_intermission.training.loop import TrialLoop

    counts = {"epochs": 0, "end_epoch_s": 0.0, "writer_s": 0.0}
    end_epoch, write = TrialLoop.end_epoch, _background.PendingWrite._run

    def counted_end_epoch(self: TrialLoop, metric: float) -> None:
        start = time.thread_time()
        try:
            end_epoch(self, metric)
        finally:
            counts["end_epoch_s"] += time.thread_time() - start
            counts["epochs"] += 1

    def counted_write(self: _background.PendingWrite) -> None:
        start = time.thread_time()
        try:
            write(self)
        finally:
            counts["writer_s"] += time.thread_time() - start

    TrialLoop.end_epoch = counted_end_epoch  # type: ignore[method-assign]
    _background.PendingWrite._run = counted_write  # type: ignore[method-assign]
    return counts


def calibrate_steps(epoch_seconds: float) -> int:
    """Steps of the benchmark objective that take about `epoch_seconds` here, now."""
    import torch

    from benchmarks.objectives import _setup, _train_epoch

    class FixedTrial:
        def suggest_float(self, name: str, low: float, high: float, log: bool = False) -> float:
            return low

    os.environ["BENCH_STEPS_PER_EPOCH"] = "5"
    model, optimizer, x, y = _setup(FixedTrial())  # type: ignore[arg-type]
    order = torch.arange(len(x))
    _train_epoch(model, optimizer, x, y, order)  # warm up
    steps, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < max(0.5, 3 * epoch_seconds):
        _train_epoch(model, optimizer, x, y, order)
        steps += 5
    return max(1, round(epoch_seconds * steps / elapsed))


if __name__ == "__main__":
    if sys.argv[1] == "calibrate":
        print(calibrate_steps(float(sys.argv[2])))
        raise SystemExit(0)
    kind, workdir, n_trials, max_epochs, seed = sys.argv[1:6]
    print("BENCH-RESULT " + json.dumps(main(kind, workdir, int(n_trials), int(max_epochs), int(seed))))
