"""Training loop: simulator or shard batches → set loss → AdamW; validation, resumable checkpoints.

The batch of step ``s`` depends only on (seed, s), and checkpoints carry the optimiser,
the step and the RNG states, so a run resumed from a checkpoint continues exactly as if it
had never stopped.
"""

from __future__ import annotations

import logging
import math
import os
import random
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import torch
import yaml
from pydantic import Field, ValidationError
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from invispose.config import Strict
from invispose.errors import ConfigError, ModelError
from invispose.model.checkpoint import load_model, save_checkpoint
from invispose.model.evaluate import evaluate_batches, simulator_generate, take
from invispose.model.inputs import inputs_from_batch
from invispose.model.loss import LossWeights, set_loss, targets_from_batch
from invispose.model.metrics import MeanPoseStats
from invispose.model.network import PoseNet, PoseNetConfig, count_parameters
from invispose.schemas import MAX_PERSONS, WindowBatch
from invispose.threads import limit_threads, single_threaded

logger = logging.getLogger(__name__)


class DataConfig(Strict):
    """Where training windows come from."""

    source: Literal["sim", "shards"] = Field("sim", description="Simulator on the fly or shards")
    shards_dir: Path | None = Field(None, description="Folder for load_shards (source: shards)")
    max_persons: int = Field(MAX_PERSONS, ge=0, le=MAX_PERSONS, description="Persons per window")
    hardware: str | None = Field(None, description="Simulator hardware profile; None = mixed")
    window_samples: int = Field(64, ge=8, description="Time steps per window")
    rate_hz: float = Field(100.0, gt=0, description="Window time-grid rate")
    workers: int = Field(
        1, ge=0, description="Worker processes simulating the next batches (0 = in the trainer)"
    )
    prefetch_depth: int = Field(2, ge=1, description="Batches generated ahead (>= workers)")
    floor_maps: bool = Field(
        False, description="Back-project every router onto the room grid (space-input models)"
    )
    calibrated_rad: float | None = Field(
        None, ge=0.0, le=10.0,
        description="Multi-antenna routers carry measured chain phases with this error "
        "(as `invispose calibrate` leaves them, ~0.15); None: estimated from the static",
    )


class TrainConfig(Strict):
    """Everything a training run needs (configs/train.yaml)."""

    seed: int = Field(0, description="Seeds weights, data order and simulator batches")
    steps: int = Field(20_000, ge=1, description="Optimiser steps in total")
    batch_size: int = Field(64, ge=1, description="Windows per step")
    lr: float = Field(1e-3, gt=0, description="Peak learning rate (AdamW)")
    min_lr_ratio: float = Field(0.05, ge=0, le=1, description="Final lr as a fraction of peak")
    warmup_steps: int = Field(500, ge=0, description="Linear warm-up before the cosine decay")
    weight_decay: float = Field(0.01, ge=0, description="AdamW decay on weight matrices")
    grad_clip: float = Field(1.0, gt=0, description="Gradient norm clip")
    val_every: int = Field(500, ge=1, description="Steps between validations")
    val_windows: int = Field(512, ge=1, description="Windows of the fixed validation set")
    val_seed: int = Field(1, description="Seed of the validation set")
    checkpoint_every: int = Field(1000, ge=1, description="Steps between checkpoints")
    checkpoint: Path = Field(Path("runs/invispose-small/last.pt"), description="Latest weights")
    best_checkpoint: Path | None = Field(
        Path("runs/invispose-small/best.pt"), description="Weights with the best val MPJPE"
    )
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Training device")
    bf16: bool = Field(True, description="bfloat16 autocast on CUDA")
    num_threads: int | None = Field(None, ge=1, description="torch CPU threads; None = torch's")
    progress: bool = Field(True, description="Show a progress bar")
    model: dict[str, Any] = Field(default_factory=dict, description="PoseNetConfig overrides")
    loss: dict[str, float] = Field(default_factory=dict, description="LossWeights overrides")
    data: DataConfig = Field(default_factory=DataConfig, description="Training data")

    def network_config(self) -> PoseNetConfig:
        """The network's hyperparameters."""
        try:
            return PoseNetConfig.from_dict(self.model)
        except (ModelError, TypeError) as exc:
            raise ConfigError(f"model: {exc}", [("model", str(exc))]) from exc

    def loss_weights(self) -> LossWeights:
        """The loss weights."""
        try:
            return LossWeights(**self.loss)
        except TypeError as exc:
            raise ConfigError(f"loss: {exc}", [("loss", str(exc))]) from exc


def load_train_config(path: str | os.PathLike[str], **overrides: Any) -> TrainConfig:
    """Read configs/train.yaml (or another file); ``overrides`` replace top-level keys."""
    file_path = Path(path)
    try:
        data = yaml.safe_load(file_path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read {file_path}: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file_path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{file_path}: must be a mapping")
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        cfg = TrainConfig.model_validate(data)
    except ValidationError as exc:
        problems = [(".".join(str(p) for p in e["loc"]), e["msg"]) for e in exc.errors()]
        lines = "\n".join(f"  {loc}: {msg}" for loc, msg in problems)
        raise ConfigError(f"{len(problems)} problem(s) in {file_path}:\n{lines}", problems) from exc
    cfg.network_config()
    cfg.loss_weights()
    return cfg


class BatchSource(Protocol):
    """Training batches by step number; the same step always gives the same batch."""

    def batch(self, step: int) -> WindowBatch: ...

    def close(self) -> None: ...


def step_seed(seed: int, step: int) -> int:
    """A 32-bit simulator seed for (run seed, step), well mixed."""
    return int(np.random.SeedSequence([seed, step]).generate_state(1)[0])


def _generate(split: str, seed: int, n_windows: int, data: dict[str, Any]) -> WindowBatch:
    """One simulator call (module level so a worker process can run it)."""
    result: WindowBatch = simulator_generate()(split, seed, n_windows, **data)
    return result


def simulator_kwargs(data: DataConfig) -> dict[str, Any]:
    """Keyword arguments of ``generate_batch`` from the data config."""
    return {
        "max_persons": data.max_persons,
        "hardware": data.hardware,
        "floor_maps": data.floor_maps,
        "calibrated_rad": data.calibrated_rad,
        "window_samples": data.window_samples,
        "rate_hz": data.rate_hz,
    }


class SimulatorSource:
    """Fresh simulator windows every step, optionally generated ahead in worker processes."""

    def __init__(self, split: str, seed: int, batch_size: int, data: DataConfig) -> None:
        self.split, self.seed, self.batch_size = split, seed, batch_size
        self.kwargs = simulator_kwargs(data)
        simulator_generate()  # fail now, not in the worker, when the simulator is missing
        self.depth = max(data.prefetch_depth, data.workers)
        # spawn, not fork: forking a process that already runs torch threads can deadlock
        self.pool = (
            ProcessPoolExecutor(data.workers, mp_context=get_context("spawn"),
                                initializer=single_threaded)
            if data.workers
            else None
        )
        self.pending: dict[int, Future[WindowBatch]] = {}

    def _args(self, step: int) -> tuple[str, int, int, dict[str, Any]]:
        return self.split, step_seed(self.seed, step), self.batch_size, self.kwargs

    def batch(self, step: int) -> WindowBatch:
        """The batch of ``step``; schedules the next ones when prefetching."""
        if self.pool is None:
            return _generate(*self._args(step))
        for ahead in range(step, step + self.depth + 1):
            if ahead not in self.pending:
                self.pending[ahead] = self.pool.submit(_generate, *self._args(ahead))
        for stale in [s for s in self.pending if s < step]:
            self.pending.pop(stale).cancel()
        return self.pending.pop(step).result()

    def close(self) -> None:
        """Stop the worker."""
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)


class ShardSource:
    """Random minibatches of windows cached on disk by the simulator (``load_shards``)."""

    def __init__(self, shards_dir: Path, seed: int, batch_size: int) -> None:
        try:
            from invispose.sim.dataset import load_shards
        except ImportError as exc:
            raise ConfigError(f"shards need invispose.sim.dataset.load_shards: {exc}") from exc
        self.windows = load_shards(shards_dir)
        self.seed, self.batch_size = seed, batch_size

    def batch(self, step: int) -> WindowBatch:
        """A random subset, drawn from (seed, step)."""
        rng = np.random.default_rng([self.seed, step])
        size = min(self.batch_size, len(self.windows))
        return take(self.windows, rng.choice(len(self.windows), size, replace=False))

    def close(self) -> None:
        """Nothing to release."""


def lr_at(cfg: TrainConfig, step: int) -> float:
    """Linear warm-up, then cosine decay to ``min_lr_ratio · lr``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    cosine = 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return cfg.lr * (cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * cosine)


def resolve_device(name: str) -> torch.device:
    """'auto' → CUDA when present, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: cuda requested but no CUDA device is available")
    return torch.device(name)


def make_optimizer(model: PoseNet, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW with decay on weight matrices only (norms, biases and queries are not shrunk)."""
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and n != "queries"]
    rest = [p for n, p in model.named_parameters() if p.ndim < 2 or n == "queries"]
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": rest, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.95))


def rng_state() -> dict[str, Any]:
    """Python and torch RNG states (data never uses a global RNG)."""
    state: dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Inverse of ``rng_state``."""
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclass
class TrainResult:
    """What a run produced."""

    model: PoseNet
    step: int
    mean_pose: MeanPoseStats
    history: list[dict[str, float]] = field(default_factory=list)  # one entry per validation
    checkpoint: Path | None = None


def validate(
    model: PoseNet,
    val: WindowBatch,
    mean_pose: MeanPoseStats,
    cfg: TrainConfig,
    device: torch.device,
) -> dict[str, float]:
    """Validation MPJPE, count accuracy, falls, and the baseline's MPJPE (no projection)."""
    ours, base, _, _ = evaluate_batches(
        model, [val], mean_pose, None, device, cfg.batch_size, classical=False
    )
    flat = {k: float(v) for k, v in ours.items() if isinstance(v, float | int)}
    flat["root_error_median_m"] = float(ours["root_error_m"]["median"])
    return {**flat, "baseline_mpjpe_mm": float(base["mpjpe_mm"])}


def train_step(
    model: PoseNet,
    optimizer: torch.optim.Optimizer,
    batch: WindowBatch,
    weights: LossWeights,
    cfg: TrainConfig,
    step: int,
    device: torch.device,
) -> dict[str, float]:
    """One optimiser step on one batch; returns the loss terms."""
    for group in optimizer.param_groups:
        group["lr"] = lr_at(cfg, step)
    inputs, targets = inputs_from_batch(batch, device), targets_from_batch(batch, device)
    autocast = device.type == "cuda" and cfg.bf16
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
        out = model(inputs)
    loss, terms = set_loss(out, targets, weights)  # the loss itself runs in float32
    if not math.isfinite(terms["loss"]):
        raise ModelError(f"loss became {terms['loss']} at step {step}")
    optimizer.zero_grad(set_to_none=True)
    torch.autograd.backward(loss)
    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    optimizer.step()
    return terms


def train(
    cfg: TrainConfig,
    *,
    resume: Path | None = None,
    source: BatchSource | None = None,
    val_batch: WindowBatch | None = None,
    on_validate: Callable[[int, dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train PoseNet; ``source``/``val_batch`` default to the configured simulator data."""
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    if cfg.num_threads:
        limit_threads(cfg.num_threads)  # torch and numpy's BLAS (validation data, matching)
    device = resolve_device(cfg.device)
    model = PoseNet(cfg.network_config()).to(device)
    weights = cfg.loss_weights()
    optimizer = make_optimizer(model, cfg)
    mean_pose, step, best = MeanPoseStats(), 0, math.inf
    if resume is not None:
        loaded = load_model(resume, device)
        if loaded.train_state is None:
            raise ModelError(f"{resume} holds no training state to resume from")
        if loaded.model.cfg != model.cfg:
            raise ModelError(f"{resume} was trained with other hyperparameters than the config")
        model.load_state_dict(loaded.model.state_dict())
        optimizer.load_state_dict(loaded.train_state["optimizer"])
        step = int(loaded.train_state["step"])
        best = float(loaded.train_state.get("best_mpjpe_mm", math.inf))
        set_rng_state(loaded.train_state["rng"])
        mean_pose = loaded.mean_pose or mean_pose
        logger.info("resumed %s at step %d", resume, step)
    logger.info("PoseNet with %d parameters on %s", count_parameters(model), device)

    if val_batch is None:
        val_batch = _generate("val", cfg.val_seed, cfg.val_windows, simulator_kwargs(cfg.data))
    if source is None:
        if cfg.data.source == "shards":
            if cfg.data.shards_dir is None:
                raise ConfigError("data.shards_dir is required when data.source is shards")
            source = ShardSource(cfg.data.shards_dir, cfg.seed, cfg.batch_size)
        else:
            source = SimulatorSource("train", cfg.seed, cfg.batch_size, cfg.data)
    result = TrainResult(model=model, step=step, mean_pose=mean_pose)

    def save(path: Path, metrics: dict[str, float] | None = None) -> None:
        train_state = {
            "step": step,
            "optimizer": optimizer.state_dict(),
            "rng": rng_state(),
            "best_mpjpe_mm": best,
            "config": cfg.model_dump(mode="json"),
        }
        meta = {"step": step, "val": metrics or {}}
        save_checkpoint(path, model, mean_pose=mean_pose, train_state=train_state, metadata=meta)
        result.checkpoint = path

    bar = tqdm(total=cfg.steps, initial=step, disable=not cfg.progress, unit="step")
    model.train()
    try:
        with logging_redirect_tqdm():  # log lines print above the progress bar
            while step < cfg.steps:
                batch = source.batch(step)
                mean_pose.update(batch.keypoints_m, batch.person_mask, batch.room_size_m)
                terms = train_step(model, optimizer, batch, weights, cfg, step, device)
                step += 1
                result.step = step
                bar.update(1)
                bar.set_postfix(loss=f"{terms['loss']:.3f}", kp_m=f"{terms['keypoints_l1_m']:.3f}")
                metrics = None
                if step % cfg.val_every == 0 or step == cfg.steps:
                    metrics = validate(model, val_batch, mean_pose, cfg, device)
                    result.history.append({"step": float(step), **metrics})
                    logger.info(
                        "step %d validation %s", step, {k: round(v, 4) for k, v in metrics.items()}
                    )
                    if on_validate is not None:
                        on_validate(step, metrics)
                    if cfg.best_checkpoint is not None and metrics["mpjpe_mm"] < best:
                        best = metrics["mpjpe_mm"]
                        save(cfg.best_checkpoint, metrics)
                if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                    save(cfg.checkpoint, metrics)
    finally:
        bar.close()
        source.close()
    return result
