"""PoseEstimator: the shipped pose model (or the classical localiser) behind Ray Serve."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field
from ray import serve

from actors.common import ESTIMATOR_DEPLOYMENT
from invispose.localise.classical import ClassicalEstimator
from invispose.model.checkpoint import load_model
from invispose.model.network import PoseNet
from invispose.schemas import CsiWindow, Detection

logger = logging.getLogger(__name__)


class EstimatorOptions(BaseModel):
    """Runtime-adjustable settings (``reconfigure`` / user_config)."""

    model_config = ConfigDict(extra="forbid")

    max_batch_size: int = Field(32, ge=1, description="Space hops (requests) per batch at most")
    batch_wait_timeout_s: float = Field(0.005, ge=0, description="Wait to fill a batch")


@serve.deployment(name=ESTIMATOR_DEPLOYMENT, max_ongoing_requests=128)
class PoseEstimator:
    """Loads a checkpoint once; ``__call__`` takes one window and returns its Detection."""

    def __init__(
        self, checkpoint: str, device: str = "auto", torch_threads: int = 0,
        estimator: str = "learned",
    ) -> None:
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if torch_threads > 0:
            torch.set_num_threads(torch_threads)
        self.device = torch.device(device)
        self.model: PoseNet | None = None
        self.classical: ClassicalEstimator | None = None
        if estimator == "learned" and not Path(checkpoint).exists():
            logger.warning("PoseEstimator: no checkpoint at %s; using the classical localiser "
                           "(model: classical)", checkpoint)
            estimator = "classical"
        if estimator == "classical":
            self.classical = ClassicalEstimator()
        else:
            self.model = load_model(Path(checkpoint), self.device).model
        self.estimator = estimator
        self.use_bf16 = self.device.type == "cuda"
        # torch runs on one worker thread so the replica's event loop keeps batching
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
        self.batches = 0
        self.windows = 0
        self.batch_sizes: deque[int] = deque(maxlen=1000)
        self.batch_ms: deque[float] = deque(maxlen=1000)  # time to infer each batch
        self.failures = 0  # batches whose prediction raised
        self.consecutive_failures = 0  # since the last batch that succeeded
        self.last_error: str | None = None
        logger.info("PoseEstimator: %s on %s", checkpoint if self.model else estimator,
                    self.device)

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Apply batching settings from the config without a restart."""
        options = EstimatorOptions.model_validate(user_config)
        self.__call__.set_max_batch_size(options.max_batch_size)  # type: ignore[attr-defined]
        self.__call__.set_batch_wait_timeout_s(options.batch_wait_timeout_s)  # type: ignore[attr-defined]

    def _predict(self, hops: list[list[CsiWindow]]) -> list[list[Detection]]:
        """Detections per space hop: the classical localiser and a space-input model fuse a
        hop's routers into one; the first model runs per router window."""
        if self.classical is not None:
            return [[self.classical.detect(windows)] for windows in hops]
        assert self.model is not None
        if self.use_bf16:
            with torch.autocast("cuda", dtype=torch.bfloat16):
                return self.model.predict_hops(hops, batch_size=len(hops))
        return self.model.predict_hops(hops, batch_size=len(hops))

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.005)
    async def __call__(self, hops: list[list[CsiWindow]]) -> list[list[Detection]]:
        """One request is one space's router windows of one hop; returns its detections."""
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        try:
            detections = await loop.run_in_executor(self._executor, self._predict, hops)
        except Exception as exc:
            self.failures += 1
            self.consecutive_failures += 1
            self.last_error = f"{type(exc).__name__}: {exc}"[:500]
            raise
        self.consecutive_failures = 0
        n_windows = sum(len(windows) for windows in hops)
        self.batches += 1
        self.windows += n_windows
        self.batch_sizes.append(n_windows)
        self.batch_ms.append((time.perf_counter() - started) * 1e3)
        return detections

    async def stats(self) -> dict[str, Any]:
        """Batches and windows served by this replica."""
        return {
            "batches": self.batches,
            "windows": self.windows,
            "mean_batch": self.windows / self.batches if self.batches else 0.0,
            "recent_batch_sizes": list(self.batch_sizes)[-100:],
            "recent_batch_ms": [round(ms, 3) for ms in list(self.batch_ms)[-100:]],
            "device": str(self.device),
            "estimator": self.estimator,
            "gpu_percent": self._gpu_percent(),
            "failures": self.failures,
            "consecutive_failures": self.consecutive_failures,
            "last_error": self.last_error,
        }

    def _gpu_percent(self) -> float | None:
        """Utilisation of this replica's GPU (None on CPU or without NVML)."""
        if self.device.type != "cuda":
            return None
        try:
            return float(torch.cuda.utilization(self.device))
        except Exception:  # NVML missing or the driver refuses: unknown, not zero
            return None

