"""Evaluation of a checkpoint on a simulator split, next to the mean-pose baseline.

The baseline predicts the training set's mean pose (joints relative to the hip centre,
placed at the mean hip position relative to the room) for every true person, so every
pose metric shows how much the model learned beyond "a person stands about there". Its
count is the training set's most frequent person count and it never predicts a fall.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch

from invispose.errors import ModelError, SimulationError
from invispose.model.checkpoint import DEFAULT_CHECKPOINT, load_model
from invispose.model.metrics import MeanPoseStats, MetricAccumulator, Projection
from invispose.model.network import PoseNet, inputs_from_batch
from invispose.schemas import MAX_PERSONS, FloatArray, WindowBatch

logger = logging.getLogger(__name__)

EVAL_SPLITS = ("same-layout", "cross-layout", "cross-hardware")
#: windows generated per simulator call: bounds memory for large evaluations
EVAL_CHUNK = 256
#: training windows drawn for the baseline when a checkpoint carries no mean pose
BASELINE_WINDOWS = 2048
METRIC_LABELS = {
    "mpjpe_mm": "MPJPE (mm)",
    "pa_mpjpe_mm": "PA-MPJPE (mm)",
    "pck3d_150": "PCK-3D@150mm",
    "oks_ap": "OKS AP",
    "ap50": "AP50",
    "ap75": "AP75",
    "count_accuracy": "count accuracy",
    "fall_precision": "fall precision",
    "fall_recall": "fall recall",
}


@dataclass
class Evaluation:
    """Metrics of the model and of the baseline on one split."""

    split: str
    seed: int
    windows: int
    model: dict[str, float]
    baseline: dict[str, float]
    persons: int | None = None  # only windows with exactly this many people were scored

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` document; undefined metrics (nan) become null."""

        def clean(values: dict[str, float]) -> dict[str, float | None]:
            return {k: (None if math.isnan(v) else round(v, 4)) for k, v in values.items()}

        doc: dict[str, Any] = {
            "split": self.split,
            "seed": self.seed,
            "windows": self.windows,
            "model": clean(self.model),
            "baseline": clean(self.baseline),
        }
        if self.persons is not None:
            doc["persons"] = self.persons
        return doc

    def table(self) -> str:
        """A plain-text table for the terminal."""
        lines = [
            f"split {self.split}, seed {self.seed}, {self.windows} windows"
            + ("" if self.persons is None else f" with exactly {self.persons} people"),
            f"{'metric':<16} {'model':>9} {'mean pose':>10}",
        ]
        for key, label in METRIC_LABELS.items():
            cells = [
                "n/a" if math.isnan(v) else f"{v:.1f}" if key.endswith("_mm") else f"{v:.3f}"
                for v in (self.model[key], self.baseline[key])
            ]
            lines.append(f"{label:<16} {cells[0]:>9} {cells[1]:>10}")
        lines.append("mean pose: the training mean pose at the true person count;")
        lines.append("  its count is the most frequent training count; it never predicts a fall")
        return "\n".join(lines)


def predict_arrays(
    model: PoseNet, batch: WindowBatch, device: torch.device | str = "cpu", batch_size: int = 64
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Presence (N, K), keypoints (N, K, J, 3) and fall probability (N, K) for a batch."""
    presence, keypoints, fall = [], [], []
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for start in range(0, len(batch), batch_size):
                part = take(batch, np.arange(start, min(start + batch_size, len(batch))))
                out = model(inputs_from_batch(part, device))
                presence.append(torch.sigmoid(out.presence_logit).float().cpu().numpy())
                keypoints.append(out.keypoints_m.float().cpu().numpy())
                fall.append(torch.sigmoid(out.fall_logit).float().cpu().numpy())
    finally:
        model.train(was_training)
    return np.concatenate(presence), np.concatenate(keypoints), np.concatenate(fall)


def take(batch: WindowBatch, idx: np.ndarray) -> WindowBatch:
    """The windows ``idx`` of a batch (every array field, whatever the batch carries)."""
    arrays = {
        f.name: getattr(batch, f.name)[idx] for f in fields(WindowBatch) if f.name != "hardware"
    }
    hardware = [batch.hardware[i] for i in idx] if batch.hardware else []
    return WindowBatch(hardware=hardware, **arrays)


def evaluate_batches(
    model: PoseNet,
    batches: Iterable[WindowBatch],
    mean_pose: MeanPoseStats,
    project: Projection | None,
    device: torch.device | str = "cpu",
    batch_size: int = 64,
) -> tuple[dict[str, float], dict[str, float], int]:
    """Model metrics, baseline metrics and the number of windows seen."""
    ours = MetricAccumulator(project=project)
    base = MetricAccumulator(project=project)
    k = model.cfg.max_persons
    for batch in batches:
        if len(batch) == 0:
            continue
        presence, keypoints, fall = predict_arrays(model, batch, device, batch_size)
        truth = (batch.keypoints_m, batch.person_mask, batch.falling, batch.room_size_m)
        ours.update(presence, keypoints, fall, *truth)
        counts = batch.person_mask.sum(1)  # (N,) the true count: pose metrics on equal terms
        b_presence, b_keypoints = mean_pose.predict(batch.room_size_m, counts, k)
        majority = np.full(len(batch), mean_pose.majority_count)
        base.update(b_presence, b_keypoints, np.zeros_like(b_presence), *truth, majority)
    return ours.result(), base.result(), ours.windows


def simulator_batches(
    split: str, seed: int, n_windows: int, chunk: int = EVAL_CHUNK
) -> Iterator[WindowBatch]:
    """``n_windows`` windows of a split, generated ``chunk`` at a time (deterministic in seed)."""
    generate_batch = simulator_generate()
    for index, start in enumerate(range(0, n_windows, chunk)):
        chunk_seed = int(np.random.SeedSequence([seed, index]).generate_state(1)[0])
        yield generate_batch(split, chunk_seed, min(chunk, n_windows - start))


def simulator_generate() -> Any:
    """The simulator's ``generate_batch``, or a clear error when it is missing."""
    try:
        from invispose.sim.dataset import generate_batch
    except ImportError as exc:
        raise SimulationError(
            f"the simulator dataset (invispose.sim.dataset) is missing: {exc}"
        ) from exc
    return generate_batch


def front_projection() -> Projection:
    """The simulator's front view as a Projection returning (..., 2) in 0–1."""
    try:
        from invispose.sim.view import project_front
    except ImportError as exc:
        raise SimulationError(f"the front view (invispose.sim.view) is missing: {exc}") from exc

    def project(points_m: FloatArray, room_size_m: FloatArray) -> FloatArray:
        u, v = project_front(points_m, room_size_m)  # each (...,)
        uv: FloatArray = np.stack([u, v], axis=-1)  # (..., 2)
        return uv

    return project


def baseline_from_simulator(seed: int, n_windows: int = BASELINE_WINDOWS) -> MeanPoseStats:
    """Mean-pose statistics from freshly generated training windows."""
    stats = MeanPoseStats()
    for batch in simulator_batches("train", seed, n_windows):
        stats.update(batch.keypoints_m, batch.person_mask, batch.room_size_m)
    return stats


def evaluate_checkpoint(
    path: str | os.PathLike[str] = DEFAULT_CHECKPOINT,
    split: str = "same-layout",
    seed: int = 0,
    n_windows: int = 1000,
    device: str = "cpu",
    batch_size: int = 64,
    persons: int | None = None,
) -> Evaluation:
    """Load a checkpoint and evaluate it on ``n_windows`` simulator windows of ``split``.

    ``persons``: score only the windows (of those ``n_windows``) holding exactly that many
    people, e.g. 1 for the single-person numbers; ``Evaluation.windows`` says how many.
    """
    if split not in (*EVAL_SPLITS, "val"):
        raise ModelError(f"unknown split {split!r}; choose one of {', '.join(EVAL_SPLITS)}")
    if persons is not None and not 0 <= persons <= MAX_PERSONS:
        raise ModelError(f"persons must be 0..{MAX_PERSONS}, got {persons}")
    loaded = load_model(path, device)
    mean_pose = loaded.mean_pose
    if mean_pose is None or mean_pose.n_persons == 0:
        logger.warning("checkpoint %s has no mean pose; drawing it from the train split", path)
        mean_pose = baseline_from_simulator(seed)
    project = front_projection()
    batches = simulator_batches(split, seed, n_windows)
    if persons is not None:
        batches = (
            take(b, np.flatnonzero(b.person_mask.sum(1) == persons)) for b in batches
        )
    try:
        model_metrics, base_metrics, windows = evaluate_batches(
            loaded.model,
            batches,
            mean_pose,
            project,
            device,
            batch_size,
        )
    except (ValueError, RuntimeError) as exc:  # the model does not fit the simulator's windows
        raise ModelError(f"evaluation on {split} failed: {exc}") from exc
    return Evaluation(split, seed, windows, model_metrics, base_metrics, persons)
