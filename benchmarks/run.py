"""`make bench`: measure the plugin against plain Optuna and against the hardware, in one run.

    python -m benchmarks.run [--tiny] [--output PATH] [--api-url URL]

Starts its own Prefect server and process worker (unless `--api-url` names one that
already serves the `digits-demo` deployment), an S3 server (moto) on loopback, and
measures, each figure beside its baseline from the same run:

- overhead_ratio         plugin study vs plain `study.optimize`, wall time and peak memory
- epoch_boundary_ms      the plugin's fixed cost per epoch on the demo objective
- pause_latency_s        checkpoint stored -> process gone, after a UI-style pause
- resume_latency_s       resume request -> first step of the resumed trial, split in four
- checkpoint_*_ratio     save/load of a ~200 MB state vs raw write/read of its bytes
- checkpoint_stall_ratio training-thread stall of a background checkpoint vs a deep copy
- history_scaling_ratio  resume latency with 1,000 finished trials vs 10

It prints a table and writes the figures to benchmarks/results/latest.json.
`--tiny` runs every measurement at a toy size (seconds, not minutes): the test suite
uses it to check the harness, not the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
RESULTS = PROJECT_ROOT / "benchmarks" / "results" / "latest.json"


@dataclass(frozen=True)
class Sizes:
    """How big each measurement is."""

    overhead_trials: int
    overhead_epochs: int
    overhead_repeats: int
    epoch_seconds: float  # the overhead objective's epoch length the steps are calibrated to
    boundary_trials: int
    boundary_epochs: int
    checkpoint_mb: int
    checkpoint_repeats: int
    history_small: int
    history_large: int
    cycle_epochs: int


FULL = Sizes(4, 5, 2, 1.0, 2, 6, 200, 5, 10, 1000, 60)
TINY = Sizes(2, 2, 1, 0.05, 1, 3, 4, 1, 2, 5, 40)

TARGETS = {
    "overhead_ratio": ("<=", 1.03),
    "overhead_ratio_peak_memory": ("<=", 1.03),
    "epoch_boundary_ms": ("<=", 10.0),
    "pause_latency_s": ("<=", 1.0),
    "resume_latency_s": ("<=", 5.0),
    "checkpoint_write_ratio_local": ("<=", 1.25),
    "checkpoint_read_ratio_local": ("<=", 1.25),
    "checkpoint_write_ratio_s3": ("<=", 1.25),
    "checkpoint_read_ratio_s3": ("<=", 1.25),
    "checkpoint_stall_ratio": ("<=", 1.5),
    "history_scaling_ratio": ("<=", 1.5),
}


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- overhead ----------------------------------------------------------------------
def measure_overhead(workdir: Path, sizes: Sizes, env: dict[str, str]) -> dict[str, Any]:
    steps = 2  # toy size: no calibration
    if sizes != TINY:  # calibrated in a process like the measured ones, under the same conditions
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks.overhead", "calibrate", str(sizes.epoch_seconds)],
            cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300, check=True,
        )
        steps = int(done.stdout.split()[-1])
    env = {**env, "BENCH_STEPS_PER_EPOCH": str(steps)}
    runs: dict[str, list[dict[str, Any]]] = {"plain": [], "plugin": []}
    # Plain, plugin, plugin, plain: each side meets the same share of whatever else the
    # machine does; each figure is the best of its two runs (the least disturbed).
    for i, kind in enumerate(("plain", "plugin", "plugin", "plain")[: 4 if sizes.overhead_repeats > 1 else 2]):
        folder = workdir / f"overhead-{kind}-{i}"
        folder.mkdir()
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks.overhead", kind, str(folder),
             str(sizes.overhead_trials), str(sizes.overhead_epochs), "0"],
            cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=900,
        )
        line = next((l for l in done.stdout.splitlines() if l.startswith("BENCH-RESULT ")), None)
        if done.returncode != 0 or line is None:
            raise RuntimeError(f"overhead run {kind} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        runs[kind].append(json.loads(line.removeprefix("BENCH-RESULT ")))
        last = runs[kind][-1]
        log(f"  {kind}: {last['wall_s']:.2f} s wall, {last['cpu_s']:.2f} s CPU, peak RSS {last['peak_rss_mb']:.0f} MB")
    results = {
        kind: {
            "wall_s": min(r["wall_s"] for r in rs),
            "cpu_s": min(r["cpu_s"] for r in rs),
            "peak_rss_mb": min(r["peak_rss_mb"] for r in rs),
            "params": rs[0]["params"],
            "all_wall_s": [r["wall_s"] for r in rs],
        }
        for kind, rs in runs.items()
    }
    plain, plugin = results["plain"], results["plugin"]
    return {
        "value": plugin["wall_s"] / plain["wall_s"],
        "peak_memory": plugin["peak_rss_mb"] / plain["peak_rss_mb"],
        # CPU time of the study's own process: much less disturbed by other load than wall
        # time (it leaves out the Prefect server's share of the plugin's API calls).
        "cpu_time": plugin["cpu_s"] / plain["cpu_s"],
        "plugin_cpu_s": plugin["cpu_s"],
        "plain_cpu_s": plain["cpu_s"],
        "plugin_wall_s": plugin["wall_s"],
        "plain_wall_s": plain["wall_s"],
        "plugin_peak_rss_mb": plugin["peak_rss_mb"],
        "plain_peak_rss_mb": plain["peak_rss_mb"],
        "same_trial_params": plugin["params"] == plain["params"],
        "plugin_runs_wall_s": plugin["all_wall_s"],
        "plain_runs_wall_s": plain["all_wall_s"],
        "n_trials": sizes.overhead_trials,
        "epochs_per_trial": sizes.overhead_epochs,
        "steps_per_epoch": steps,
        "epoch_s_nominal": plain["wall_s"] / (sizes.overhead_trials * sizes.overhead_epochs),
    }


# -- the whole run -----------------------------------------------------------------------
def run(sizes: Sizes, *, api_url: str | None, output: Path) -> dict[str, Any]:
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    sys.path.insert(0, str(PROJECT_ROOT))
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from benchmarks import boundary, checkpoint_io, checkpoint_stall, latency
    from deployments.local_services import LocalS3
    from deployments.local_stack import LocalPrefect

    started = time.perf_counter()
    (PROJECT_ROOT / ".intermission").mkdir(exist_ok=True)
    # On the project's disk, not a tmpfs: the checkpoint figures are about a real disk.
    workdir = Path(tempfile.mkdtemp(prefix="bench-", dir=PROJECT_ROOT / ".intermission"))
    stack: LocalPrefect | None = None
    figures: dict[str, Any] = {}
    try:
        if api_url is None:
            log("starting a Prefect server and a process worker on loopback")
            stack = LocalPrefect(workdir / "prefect-home", worker_poll_seconds=2)
            stack.start()
            stack.deploy("digits-demo")
            stack.start_worker("bench-worker")
            api_url = stack.api_url
        env = {**os.environ, "PREFECT_API_URL": api_url, "PREFECT_LOGGING_LEVEL": "WARNING"}
        with temporary_settings({PREFECT_API_URL: api_url}):
            log("overhead: plain Optuna, then the plugin, on a ~%.2f s/epoch objective" % sizes.epoch_seconds)
            figures["overhead_ratio"] = measure_overhead(workdir, sizes, env)

            log("epoch boundary on the demo objective")
            figures["epoch_boundary_ms"] = boundary.measure(
                workdir / "boundary", n_trials=sizes.boundary_trials, max_epochs=sizes.boundary_epochs
            )

            log(f"checkpoint I/O, {sizes.checkpoint_mb} MB, local disk")
            local = checkpoint_io.measure(
                str(workdir / "checkpoint-io"), megabytes=sizes.checkpoint_mb, repeats=sizes.checkpoint_repeats
            )
            log(f"checkpoint stall, {sizes.checkpoint_mb} MB, local disk")
            figures["checkpoint_stall_ratio"] = checkpoint_stall.measure(
                str(workdir / "checkpoint-stall"), megabytes=sizes.checkpoint_mb, repeats=sizes.checkpoint_repeats
            )
            log(f"checkpoint I/O, {sizes.checkpoint_mb} MB, S3 (moto on loopback)")
            with LocalS3(threaded=False) as s3:
                s3.create_bucket("bench-checkpoints")
                remote = checkpoint_io.measure(
                    "s3://bench-checkpoints/io", megabytes=sizes.checkpoint_mb,
                    repeats=sizes.checkpoint_repeats, storage_options=s3.storage_options,
                )
            figures["checkpoint_write_ratio"] = {
                "local": local["write_ratio"], "s3": remote["write_ratio"],
                "local_save_s": local["save_s"], "local_raw_write_s": local["raw_write_s"],
                "s3_save_s": remote["save_s"], "s3_raw_write_s": remote["raw_write_s"],
                "bytes": local["bytes"],
            }
            figures["checkpoint_read_ratio"] = {
                "local": local["read_ratio"], "s3": remote["read_ratio"],
                "local_load_s": local["load_s"], "local_raw_read_s": local["raw_read_s"],
                "s3_load_s": remote["load_s"], "s3_raw_read_s": remote["raw_read_s"],
                "bytes": local["bytes"],
            }

            cycles = {}
            for history in (sizes.history_small, sizes.history_large):
                log(f"pause and resume through the deployment, {history} finished trials")
                cycles[history] = latency.pause_resume_cycle(
                    storage=f"sqlite:///{workdir / f'history-{history}.db'}",
                    checkpoints=str(workdir / "cycle-checkpoints"),
                    study_name=f"history-{history}", history=history, max_epochs=sizes.cycle_epochs,
                )
    finally:
        if stack is not None:
            stack.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    small, large = cycles[sizes.history_small], cycles[sizes.history_large]
    boundary_figures = figures["epoch_boundary_ms"]
    figures["pause_latency_s"] = {
        "value": small["pause_checkpoint_to_exit_s"],
        "checkpoint_write_s": boundary_figures["checkpoint_write_ms"] / 1000,
        "request_to_checkpoint_s": small["pause_request_to_checkpoint_s"],
        "request_to_exit_s": small["pause_request_to_exit_s"],
        "checkpoint_to_suspended_s": small["pause_checkpoint_to_suspended_s"],
        "suspended_to_exit_s": small["pause_suspended_to_exit_s"],
    }
    excl = lambda c: c["resume_total_s"] - c["worker_pickup_s"]  # noqa: E731
    figures["resume_latency_s"] = {
        "value": small["resume_total_s"],
        "excluding_worker_pickup": excl(small),
        "worker_pickup_s": small["worker_pickup_s"],
        "process_start_s": small["process_start_s"],
        "study_load_s": small["study_load_s"],
        "checkpoint_load_s": small["checkpoint_load_s"],
        "history": sizes.history_small,
    }
    figures["history_scaling_ratio"] = {
        "value": excl(large) / excl(small),
        "including_worker_pickup": large["resume_total_s"] / small["resume_total_s"],
        "small_history": sizes.history_small,
        "large_history": sizes.history_large,
        "small": small,
        "large": large,
    }
    result = {
        "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "mode": "tiny" if sizes == TINY else "full",
        "machine": {
            "cpus": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "torch": _version("torch"),
            "optuna": _version("optuna"), "prefect": _version("prefect"),
        },
        "duration_s": time.perf_counter() - started,
        "checks": _checks(figures),
        **figures,
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2, default=str) + "\n")
    return result


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


def _checks(figures: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each headline figure with its target and whether it was met."""
    values = {
        "overhead_ratio": figures["overhead_ratio"]["value"],
        "overhead_ratio_peak_memory": figures["overhead_ratio"]["peak_memory"],
        "epoch_boundary_ms": figures["epoch_boundary_ms"]["value"],
        "pause_latency_s": figures["pause_latency_s"]["value"],
        "resume_latency_s": figures["resume_latency_s"]["excluding_worker_pickup"],
        "checkpoint_write_ratio_local": figures["checkpoint_write_ratio"]["local"],
        "checkpoint_read_ratio_local": figures["checkpoint_read_ratio"]["local"],
        "checkpoint_write_ratio_s3": figures["checkpoint_write_ratio"]["s3"],
        "checkpoint_read_ratio_s3": figures["checkpoint_read_ratio"]["s3"],
        "checkpoint_stall_ratio": figures["checkpoint_stall_ratio"]["value"],
        "history_scaling_ratio": figures["history_scaling_ratio"]["value"],
    }
    return {
        name: {"value": value, "target": f"{TARGETS[name][0]} {TARGETS[name][1]}", "met": value <= TARGETS[name][1]}
        for name, value in values.items()
    }


def table(result: dict[str, Any]) -> str:
    """The figures as a Markdown table."""
    f = result
    o, b, p, r = f["overhead_ratio"], f["epoch_boundary_ms"], f["pause_latency_s"], f["resume_latency_s"]
    w, rd, h = f["checkpoint_write_ratio"], f["checkpoint_read_ratio"], f["history_scaling_ratio"]
    st = f["checkpoint_stall_ratio"]
    c = f["checks"]
    mark = lambda name: "yes" if c[name]["met"] else "**no**"  # noqa: E731
    rows = [
        ("overhead_ratio (wall)", f"{o['value']:.3f}", "≤ 1.03", mark("overhead_ratio"),
         f"plugin {o['plugin_wall_s']:.2f} s vs plain {o['plain_wall_s']:.2f} s; {o['n_trials']} trials × {o['epochs_per_trial']} epochs of ~{o['epoch_s_nominal']:.2f} s"),
        ("overhead_ratio (CPU time)", f"{o['cpu_time']:.3f}", "(not a target)", "-",
         f"plugin {o['plugin_cpu_s']:.2f} s vs plain {o['plain_cpu_s']:.2f} s CPU in the study's process"),
        ("overhead_ratio (peak memory)", f"{o['peak_memory']:.3f}", "≤ 1.03", mark("overhead_ratio_peak_memory"),
         f"plugin {o['plugin_peak_rss_mb']:.0f} MB vs plain {o['plain_peak_rss_mb']:.0f} MB peak RSS"),
        ("epoch_boundary_ms", f"{b['value']:.2f}", "≤ 10", mark("epoch_boundary_ms"),
         f"p90 {b['p90_ms']:.2f} ms; checkpoint write {b['checkpoint_write_ms']:.2f} ms; plain Optuna report {b['plain_optuna_report_ms']:.2f} ms; demo epoch {b['demo_epoch_ms']:.0f} ms"),
        ("pause_latency_s", f"{p['value']:.2f}", "≤ 1 + write", mark("pause_latency_s"),
         f"checkpoint write {p['checkpoint_write_s'] * 1000:.1f} ms; checkpoint→Suspended {p['checkpoint_to_suspended_s']:.2f} s + Suspended→exit {p['suspended_to_exit_s']:.2f} s; request→exit {p['request_to_exit_s']:.2f} s"),
        ("resume_latency_s", f"{r['value']:.2f}", "≤ 5 + pickup", mark("resume_latency_s"),
         f"pickup {r['worker_pickup_s']:.2f} + process start {r['process_start_s']:.2f} + study load {r['study_load_s']:.2f} + trial/checkpoint load {r['checkpoint_load_s']:.2f} s"),
        ("checkpoint_write_ratio local", f"{w['local']:.2f}", "≤ 1.25", mark("checkpoint_write_ratio_local"),
         f"save {w['local_save_s']:.3f} s vs raw write {w['local_raw_write_s']:.3f} s ({w['bytes'] / 2**20:.0f} MiB)"),
        ("checkpoint_write_ratio S3", f"{w['s3']:.2f}", "≤ 1.25", mark("checkpoint_write_ratio_s3"),
         f"save {w['s3_save_s']:.3f} s vs raw PUT {w['s3_raw_write_s']:.3f} s"),
        ("checkpoint_read_ratio local", f"{rd['local']:.2f}", "≤ 1.25", mark("checkpoint_read_ratio_local"),
         f"load {rd['local_load_s']:.3f} s vs raw read {rd['local_raw_read_s']:.3f} s"),
        ("checkpoint_read_ratio S3", f"{rd['s3']:.2f}", "≤ 1.25", mark("checkpoint_read_ratio_s3"),
         f"load {rd['s3_load_s']:.3f} s vs raw GET {rd['s3_raw_read_s']:.3f} s"),
        ("checkpoint_stall_ratio", f"{st['value']:.2f}", "≤ 1.5", mark("checkpoint_stall_ratio"),
         f"stall {st['stall_ms']:.1f} ms vs deep copy {st['copy_ms']:.1f} ms; synchronous save {st['sync_save_ms']:.1f} ms ({st['bytes'] / 2**20:.0f} MiB)"),
        ("history_scaling_ratio", f"{h['value']:.2f}", "≤ 1.5", mark("history_scaling_ratio"),
         f"resume without pickup: {h['large_history']} trials {h['large']['resume_total_s'] - h['large']['worker_pickup_s']:.2f} s vs {h['small_history']} trials {h['small']['resume_total_s'] - h['small']['worker_pickup_s']:.2f} s; with pickup {h['including_worker_pickup']:.2f}"),
    ]
    lines = ["| figure | value | target | met | measured beside it |", "|---|---|---|---|---|"]
    lines += [f"| {' | '.join(row)} |" for row in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="toy sizes: checks the harness, not the figures")
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"where the JSON goes (default {RESULTS})")
    parser.add_argument("--api-url", help="use this Prefect server (with digits-demo deployed and a worker)")
    args = parser.parse_args(argv)
    result = run(TINY if args.tiny else FULL, api_url=args.api_url, output=args.output)
    print(table(result))
    print(f"\n{result['mode']} run in {result['duration_s']:.0f} s on {result['machine']['cpus']} CPUs; "
          f"written to {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
