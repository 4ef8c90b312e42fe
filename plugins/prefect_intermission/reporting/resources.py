"""What the training process was using when a study paused: CPU, memory and GPUs."""

from __future__ import annotations

import resource
import time
from typing import Any

import psutil
import torch


def measure_resources() -> dict[str, Any]:
    """CPU and memory of this process and, when present, each GPU's utilisation and memory."""
    process = psutil.Process()
    cpu = process.cpu_times()
    alive = max(time.time() - process.create_time(), 1e-6)
    rss = process.memory_info().rss
    usage: dict[str, Any] = {
        "cpu_percent": round(100 * (cpu.user + cpu.system) / alive, 1),
        "rss_bytes": rss,
        # The kernel updates its high-water mark lazily: it can trail the current size a little.
        "peak_rss_bytes": max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, rss),
        "gpus": [],
    }
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            try:
                utilization: int | None = torch.cuda.utilization(index)
            except Exception:  # needs pynvml; memory figures do not
                utilization = None
            usage["gpus"].append(
                {
                    "index": index,
                    "name": torch.cuda.get_device_name(index),
                    "utilization_percent": utilization,
                    "memory_allocated_bytes": torch.cuda.memory_allocated(index),
                    "max_memory_allocated_bytes": torch.cuda.max_memory_allocated(index),
                    "memory_reserved_bytes": torch.cuda.memory_reserved(index),
                }
            )
    return usage
