"""The `make bench` harness runs end to end (at toy sizes) and writes every figure, so it cannot rot.

It checks the harness, not the figures: timings are for `make bench`, never for tests.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from deployments.local_stack import PROJECT_ROOT

FIGURES = {
    "overhead_ratio": {"value", "peak_memory", "cpu_time", "plugin_wall_s", "plain_wall_s", "same_trial_params", "in_flow_peak_rss_mb", "prefect_share_mb",
                       "per_epoch_training_thread_ms", "per_epoch_writer_cpu_ms"},
    "epoch_boundary_ms": {"value", "checkpoint_write_ms", "plain_optuna_report_ms"},
    "pause_latency_s": {"value", "checkpoint_write_s", "request_to_exit_s"},
    "resume_latency_s": {"value", "worker_pickup_s", "process_start_s", "study_load_s", "checkpoint_load_s"},
    "checkpoint_write_ratio": {"local", "s3"},
    "checkpoint_read_ratio": {"local", "s3"},
    "checkpoint_stall_ratio": {"value", "stall_ms", "copy_ms", "sync_save_ms"},
    "history_scaling_ratio": {"value", "small", "large"},
    "pause_to_stopped_s": {"value", "step_s", "checkpoint_write_s", "request_to_exit_s", "prefect_exit_s"},
    "cli_cpu_ratio": {"value", "import_ratio", "intermission_help_cpu_s", "prefect_help_cpu_s", "import_package_cpu_s", "import_prefect_cpu_s"},
    "api_reads_per_minute": {"value", "one_trial_run", "four_trial_runs", "window_s"},
}


@pytest.mark.timeout(1500)  # every measurement at toy size, a counting Prefect server of its own among them
def test_the_bench_harness_writes_every_figure(prefect_stack, tmp_path):
    output = tmp_path / "latest.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--tiny", "--output", str(output),
         "--api-url", prefect_stack.api_url],
        cwd=PROJECT_ROOT, env=prefect_stack.env, capture_output=True, text=True, timeout=1400,
    )
    assert done.returncode == 0, done.stderr[-5000:]
    result = json.loads(output.read_text())
    assert result["mode"] == "tiny"
    for figure, keys in FIGURES.items():
        assert keys <= set(result[figure]), (figure, keys - set(result[figure]))
    # Every measured duration and ratio is a real, positive number (the splits too: each
    # instant of the resume came after the one before it).
    numbers = [result[f][k] for f, keys in FIGURES.items() for k in keys if isinstance(result[f][k], float)]
    assert len(numbers) >= 20 and all(math.isfinite(v) and v > 0 for v in numbers)
    # The same seeds gave both sides of the overhead comparison the same trials.
    assert result["overhead_ratio"]["same_trial_params"] is True
    assert set(result["checks"]) >= {
        "overhead_ratio", "peak_memory_added_mb", "epoch_boundary_ms", "history_scaling_ratio",
        "pause_to_stopped_s", "step_pause_to_exit_s",
    }
    assert "| overhead_ratio (wall) |" in done.stdout and "| history_scaling_ratio |" in done.stdout
    assert "| pause_to_stopped_s |" in done.stdout and "| step_pause_to_exit_s |" in done.stdout
    # The long epoch was paused within it, at a step boundary, not at its end.
    assert 0 < result["pause_to_stopped_s"]["steps_into_epoch"] < 15
    # The ratio is measured on the longer of the two studies the split is drawn from.
    overhead = result["overhead_ratio"]
    assert overhead["epochs_per_trial"] == 3 * overhead["short_study"]["epochs_per_trial"]
    # The split into a fixed cost and a cost per epoch: differences, so of either sign at toy size.
    split = [overhead[k] for k in ("fixed_cost_s", "fixed_cost_process_s", "added_per_epoch_ms")]
    assert all(isinstance(v, float) and math.isfinite(v) for v in split), split
    assert set(overhead["fixed_cost_parts_s"]) == {"startup", "study", "exit"}
    assert "added_per_epoch_ms" in result["checks"] and "| added_per_epoch_ms |" in done.stdout
    # The two figures drawn from noisy wall times carry their noise, which their checks count.
    for name, target in (("overhead_ratio", 1.03), ("added_per_epoch_ms", 10.0)):
        check = result["checks"][name]
        assert check["noise"] >= 0 and check["met"] == (check["value"] + check["noise"] <= target)
    assert "cli_cpu_ratio" in result["checks"] and "| cli_cpu_ratio |" in done.stdout
    assert "api_reads_per_minute" in result["checks"] and "| api_reads_per_minute |" in done.stdout
