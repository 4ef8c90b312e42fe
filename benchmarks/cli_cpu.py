"""CPU time of `intermission --help` beside `prefect --help`, and of the package's import beside Prefect's.

    python -m benchmarks.cli_cpu [REPEATS]   # prints one JSON line

Each command runs in a fresh child process; its CPU time (user + system) is read from
`getrusage(RUSAGE_CHILDREN)` around it, and each figure is the best of `repeats` runs
(the least disturbed by whatever else the machine does). CPU time rather than wall time:
on a busy machine it still says what the command itself costs.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent
# The console scripts a user runs (`python -m` where one is not installed).
INTERMISSION = [str(BIN / "intermission")] if (BIN / "intermission").exists() else [
    sys.executable, "-m", "prefect_intermission.cli.commands"
]
PREFECT = [str(BIN / "prefect")] if (BIN / "prefect").exists() else [sys.executable, "-m", "prefect"]

#: What is measured, each beside its baseline.
COMMANDS = {
    "intermission_help": [*INTERMISSION, "--help"],
    "prefect_help": [*PREFECT, "--help"],
    "import_package": [sys.executable, "-c", "import prefect_intermission"],
    "import_prefect": [sys.executable, "-c", "import prefect"],
    # What a Prefect worker loads through the `prefect.collections` entry point.
    "import_blocks": [sys.executable, "-c", "import prefect_intermission.blocks"],
    "intermission_status_help": [*INTERMISSION, "status", "--help"],
    "python": [sys.executable, "-c", "pass"],
}


def child_cpu_seconds(command: list[str], env: dict[str, str]) -> float:
    """User + system CPU time of one run of `command` in a child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=300)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited with {done.returncode}:\n{done.stderr[-3000:]}")
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def measure(repeats: int = 5, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Best-of-`repeats` CPU seconds of each command, interleaved so each meets the same load."""
    env = {**(env if env is not None else os.environ), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    runs: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(repeats):
        for name, command in COMMANDS.items():
            runs[name].append(child_cpu_seconds(command, env))
    best = {name: min(seconds) for name, seconds in runs.items()}
    return {
        "value": best["intermission_help"] / best["prefect_help"],
        "import_ratio": best["import_package"] / best["import_prefect"],
        **{f"{name}_cpu_s": seconds for name, seconds in best.items()},
        "repeats": repeats,
    }


if __name__ == "__main__":
    print(json.dumps(measure(int(sys.argv[1]) if len(sys.argv) > 1 else 5)))
