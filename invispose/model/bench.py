"""Bare-model throughput: windows/s and ms per batch on CPU, and on CUDA (bf16) when present.

The pipeline's efficiency target divides end-to-end windows/s by these numbers, so they
measure the forward pass alone on synthetic inputs of the configured shape.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from invispose.localise.maps import MAP_CELLS
from invispose.model.inputs import ModelInputs
from invispose.model.network import PoseNet, PoseNetConfig, count_parameters
from invispose.schemas import MAX_ROUTERS

logger = logging.getLogger(__name__)


def synthetic_inputs(
    batch_size: int, n_links: int, window_samples: int, n_subcarriers: int, seed: int = 0
) -> ModelInputs:
    """Random windows of the given shape in a 6 × 5 × 2.7 m room."""
    gen = torch.Generator().manual_seed(seed)
    shape = (batch_size, n_links, window_samples, n_subcarriers)
    room = torch.tensor([6.0, 5.0, 2.7])
    return ModelInputs(
        amplitude=torch.rand(shape, generator=gen) + 0.5,  # (B, L, T, S)
        phase=torch.randn(shape, generator=gen) * 0.3,  # (B, L, T, S)
        rel_phase=torch.randn(shape, generator=gen) * 0.05,  # (B, L, T, S)
        valid=torch.ones(batch_size, window_samples, dtype=torch.bool),  # (B, T)
        link_mask=torch.ones(batch_size, n_links, dtype=torch.bool),  # (B, L)
        tx_pos_m=torch.rand(batch_size, n_links, 3, generator=gen) * room,  # (B, L, 3)
        rx_pos_m=torch.rand(batch_size, n_links, 3, generator=gen) * room,  # (B, L, 3)
        room_size_m=room.expand(batch_size, 3).clone(),  # (B, 3)
        dynamic=torch.randn((*shape, 2), generator=gen) * 0.05,  # (B, L, T, S, 2)
        carrier_hz=torch.full((batch_size, n_links), 5.18e9),  # (B, L)
        antenna_offsets_wl=torch.randn(batch_size, n_links, 6, generator=gen),  # (B, L, 6)
        floor_maps=torch.rand(batch_size, MAX_ROUTERS, MAP_CELLS, MAP_CELLS,
                              generator=gen) * 3,  # (B, R, M, M)
    )


def _time_batches(
    model: PoseNet, inputs: ModelInputs, seconds: float, autocast: bool, device: torch.device
) -> dict[str, float]:
    """Run the model repeatedly for about ``seconds``; windows/s and ms per batch."""

    def run_once() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            model(inputs)
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    with torch.inference_mode():
        for _ in range(3):  # warm-up: allocator, kernels, autotuning
            run_once()
        batches = 0
        started = time.perf_counter()
        while True:
            run_once()
            batches += 1
            elapsed = time.perf_counter() - started
            if elapsed >= seconds and batches >= 3:
                break
    batch_size = int(inputs.link_mask.shape[0])
    return {
        "windows_per_s": round(batches * batch_size / elapsed, 1),
        "ms_per_batch": round(1000.0 * elapsed / batches, 3),
        "batches": batches,
    }


def bench_model(
    batch_sizes: Sequence[int] = (1, 8, 32),
    seconds: float = 2.0,
    *,
    model: PoseNet | None = None,
    n_links: int = 9,
    window_samples: int = 64,
    num_threads: int | None = None,
    cuda: bool = True,
) -> dict[str, Any]:
    """Throughput per batch size on CPU (and CUDA with bf16 autocast when available)."""
    model = model or PoseNet(PoseNetConfig())
    if num_threads:
        torch.set_num_threads(num_threads)
    cfg = model.cfg
    report: dict[str, Any] = {
        "parameters": count_parameters(model),
        "n_links": n_links,
        "window_samples": window_samples,
        "n_subcarriers": cfg.n_subcarriers,
        "cpu": {"threads": torch.get_num_threads()},
    }
    devices = [torch.device("cpu")]
    if cuda and torch.cuda.is_available():
        devices.append(torch.device("cuda"))
        report["cuda"] = {"device": torch.cuda.get_device_name(0), "dtype": "bfloat16"}
    was_training = model.training
    original = next(model.parameters()).device
    model.eval()
    try:
        for device in devices:
            model.to(device)
            for size in batch_sizes:
                inputs = synthetic_inputs(size, n_links, window_samples, cfg.n_subcarriers)
                timing = _time_batches(
                    model, inputs.to(device), seconds, device.type == "cuda", device
                )
                report[device.type][f"batch_{size}"] = timing
                logger.info("%s batch %d: %s", device.type, size, timing)
    finally:
        model.to(original).train(was_training)
    return report


def bench_space_model(
    batch_sizes: Sequence[int] = (1, 16), seconds: float = 2.0, *,
    num_threads: int | None = None,
) -> dict[str, Any]:
    """The space-input model on space windows of an Intel 3×3 and an ESP32 (10 links),
    and, apart, the floor maps the runtime computes for each (the Intel router's)."""
    from invispose.localise.backprojection import RouterView
    from invispose.localise.maps import floor_maps

    model = PoseNet(PoseNetConfig(space_inputs=True))
    report = bench_model(batch_sizes, seconds, model=model, n_links=10, num_threads=num_threads)
    report["unit"] = "space windows (windows_per_s counts spaces)"
    rng = np.random.default_rng(0)
    shape = (9, 64, model.cfg.n_subcarriers)
    view = RouterView(
        dynamic=(rng.normal(size=shape) * 0.05 + 1j * rng.normal(size=shape) * 0.05).astype(
            np.complex64),
        static=np.ones((9, model.cfg.n_subcarriers), np.complex64),
        tx_pos_m=np.repeat(rng.uniform(0, 1, (3, 3)), 3, 0).astype(np.float32),
        rx_pos_m=np.tile(rng.uniform(4, 5, (3, 3)), (3, 1)).astype(np.float32),
        carrier_hz=5.18e9,
        subcarrier_hz=np.linspace(-8.75e6, 8.75e6, model.cfg.n_subcarriers, dtype=np.float32),
    )
    room = np.array([6.0, 5.0, 2.7])
    floor_maps([view], room)  # warm-up
    n, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds or n < 3:
        floor_maps([view], room)
        n += 1
    report["floor_maps"] = {
        "ms_per_space_window": round(1000.0 * (time.perf_counter() - started) / n, 3),
        "routers_mapped": 1,
    }
    return report
