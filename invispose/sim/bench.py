"""Simulator throughput: training windows per second, in one process and in two workers."""

from __future__ import annotations

import os
import time

from invispose.sim.dataset import generate_batch
from invispose.sim.hardware import TRAIN_HARDWARE
from invispose.sim.parallel import parallel_batches

BATCH_WINDOWS = 1024


def _rate(seconds: float, hardware: str | None, seed: int) -> float:
    """Windows per second of back-to-back ``generate_batch`` calls for about ``seconds``."""
    generate_batch("train", seed, 16, hardware=hardware)  # warm caches and imports
    done = 0
    start = time.perf_counter()
    while True:
        done += len(generate_batch("train", seed + done, BATCH_WINDOWS, hardware=hardware))
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return done / elapsed


def _parallel_rate(seconds: float, workers: int) -> float:
    """Windows per second through ``parallel_batches`` once its workers are running."""
    batches = parallel_batches("train", 7, BATCH_WINDOWS, workers=workers)
    try:
        next(batches)  # worker start-up (spawn, imports) is not throughput
        done = 0
        start = time.perf_counter()
        while True:
            done += len(next(batches))
            elapsed = time.perf_counter() - start
            if elapsed >= seconds:
                return done / elapsed
    finally:
        batches.close()


def bench_sim(seconds: float = 5.0, *, workers: int = 2) -> dict[str, object]:
    """Measured windows/s: mixed hardware (the headline), per profile, and with workers.

    Wall-clock rates on this machine as it is (other load included): ``windows_per_s``
    is one process (mixed ESP32 / Intel 5300 3×3 / Nexmon windows of 64 × 32, 0-4
    people); ``parallel_windows_per_s`` uses ``workers`` processes.
    """
    share = max(seconds / 6.0, 0.5)
    per_hw = {name: round(_rate(share, name, 11), 1) for name in TRAIN_HARDWARE}
    mixed = _rate(2 * share, None, 5)
    parallel = _parallel_rate(2 * share, workers) if workers > 1 else mixed
    return {
        "windows_per_s": round(mixed, 1),
        "parallel_windows_per_s": round(parallel, 1),
        "workers": workers,
        "per_hardware_windows_per_s": per_hw,
        "batch_windows": BATCH_WINDOWS,
        "window": {"time_steps": 64, "subcarriers": 32, "rate_hz": 100.0},
        "cpus": os.cpu_count(),
    }
