"""Evaluation of a checkpoint on a simulator split, next to two baselines.

* ``baseline`` (mean pose): the training set's mean pose (joints relative to the hip
  centre, placed at the mean hip position relative to the room: about the room centre)
  for every true person, so every pose metric shows how much the model learned beyond "a
  person stands about there". Its count is the training set's most frequent person count
  and it never predicts a fall.
* ``classical``: the mean pose stood at the classical localiser's peaks (back-projection
  of the dynamic channel, ``invispose.localise``; no learning), counting 0 or 1 people.

Each column carries the pose metrics (``metrics.py``) and the location metrics
(``location_metrics.py``: hip-centre floor error, root-relative MPJPE, count confusion,
per router count and motion). ``checkpoint="classical"`` evaluates the classical
estimator alone (its column doubles as ``model``).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import torch

from invispose.errors import ModelError, SimulationError
from invispose.localise.classical import ClassicalEstimator
from invispose.model.checkpoint import DEFAULT_CHECKPOINT, load_model
from invispose.model.inputs import inputs_from_batch
from invispose.model.location_metrics import LocationAccumulator
from invispose.model.metrics import (
    PRESENCE_THRESHOLD,
    MeanPoseStats,
    MetricAccumulator,
    Projection,
)
from invispose.model.network import PoseNet
from invispose.schemas import MAX_PERSONS, MAX_ROUTERS, FloatArray, WindowBatch

logger = logging.getLogger(__name__)

EVAL_SPLITS = ("same-layout", "cross-layout", "cross-hardware")
CLASSICAL = "classical"  # the checkpoint name that evaluates the classical estimator
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


COLUMNS = ("model", "baseline", "classical")


def clean_json(value: Any) -> Any:
    """Nested metrics for JSON: floats rounded to 4 places, nan as None."""
    if isinstance(value, dict):
        return {k: clean_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_json(v) for v in value]
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, 4)
    return value


@dataclass
class Evaluation:
    """Metrics of the model and of the two baselines on one split."""

    split: str
    seed: int
    windows: int
    model: dict[str, Any]
    baseline: dict[str, Any]
    classical: dict[str, Any]
    persons: int | None = None  # only windows with exactly this many people were scored
    routers: int | None = None  # only spaces with exactly this many routers were simulated
    hardware: str | None = None  # every router of this profile

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` document; undefined metrics (nan) become null."""
        doc: dict[str, Any] = {
            "split": self.split,
            "seed": self.seed,
            "windows": self.windows,
            **{name: clean_json(getattr(self, name)) for name in COLUMNS},
        }
        if self.routers is not None:
            doc["routers"] = self.routers
        if self.hardware is not None:
            doc["hardware"] = self.hardware
        if self.persons is not None:
            doc["persons"] = self.persons
        return doc

    def table(self) -> str:
        """A plain-text table for the terminal."""
        lines = [
            f"split {self.split}, seed {self.seed}, {self.windows} windows"
            + ("" if self.persons is None else f" with exactly {self.persons} people")
            + ("" if self.routers is None else f", {self.routers} router(s) per space")
            + ("" if self.hardware is None else f", all {self.hardware}"),
            f"{'metric':<24} {'model':>9} {'mean pose':>10} {'classical':>10}",
        ]
        columns = (self.model, self.baseline, self.classical)
        rows: list[tuple[str, bool, list[float]]] = [  # label, in millimetres, values
            (label, key.endswith("_mm"), [float(c[key]) for c in columns])
            for key, label in METRIC_LABELS.items()
        ]
        for key, label in LOCATION_LABELS.items():
            rows.append((label, key.endswith("_mm"), [_location_value(c, key) for c in columns]))
        groups = sorted({r for c in columns for r in c.get("by_routers", {})})
        for r in groups:
            rows.append((f"hip error median, {r} rtr", False,
                         [_location_value(c.get("by_routers", {}).get(r, {}), "root_median")
                          for c in columns]))
        for label, millimetres, values in rows:
            cells = ["n/a" if math.isnan(v) else f"{v:.1f}" if millimetres else f"{v:.3f}"
                     for v in values]
            lines.append(f"{label:<24} {cells[0]:>9} {cells[1]:>10} {cells[2]:>10}")
        lines.append("mean pose: the training mean pose at the true person count (pose metrics);")
        lines.append("  its count is the most frequent training count; it never predicts a fall")
        lines.append("classical: the mean pose at the back-projection's peak; counts 0 or 1")
        return "\n".join(lines)


LOCATION_LABELS = {
    "root_median": "hip error median (m)",
    "root_p90": "hip error p90 (m)",
    "root_relative_mpjpe_mm": "root-rel. MPJPE (mm)",
    "one_person_exactly_one": "1 person -> exactly 1",
}


def _location_value(column: dict[str, Any], key: str) -> float:
    """A location metric of a column for the table (nan where absent)."""
    if key.startswith("root_") and key != "root_relative_mpjpe_mm":
        value = column.get("root_error_m", {}).get(key.removeprefix("root_"))
    else:
        value = column.get(key)
    return float("nan") if value is None else float(value)


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


def calibrate_presence(model: PoseNet, batch: WindowBatch, batch_size: int = 64) -> float:
    """Set the model's presence offset so that 0.5 is the threshold with the best count
    accuracy on ``batch`` (validation windows); returns that threshold on the old scale."""
    presence, _, _ = predict_arrays(model, batch, batch_size=batch_size)  # (N, K)
    truth = batch.person_mask.sum(1)  # (N,)
    thresholds = np.linspace(0.05, 0.95, 91)
    accuracy = [float(np.mean((presence >= t).sum(1) == truth)) for t in thresholds]
    best = float(thresholds[int(np.argmax(accuracy))])
    offset = model.presence_offset
    assert isinstance(offset, torch.Tensor)
    with torch.no_grad():
        offset.add_(float(np.log(best / (1.0 - best))))
    logger.info("presence threshold %.2f: count accuracy %.3f on %d windows (at 0.5: %.3f)",
                best, max(accuracy), len(batch), accuracy[45])
    return best


#: a fall alarm is right at least this often on validation, or none is calibrated
FALL_MIN_PRECISION = 0.5


def calibrate_falls(model: PoseNet, batch: WindowBatch, batch_size: int = 64) -> float:
    """Set the model's fall offset so that 0.5 is the threshold that finds the most windows
    with a fall among the reported persons (as the metrics count them) while at least
    ``FALL_MIN_PRECISION`` of its alarms are right, on ``batch`` (validation windows,
    presence already calibrated); returns that threshold on the old scale, 0.5 (offset
    unchanged) when no threshold is that precise. The trained fall head is cautious (its
    probabilities stay far below 0.5), so uncalibrated it reports no fall at all."""
    presence, _, fall = predict_arrays(model, batch, batch_size=batch_size)  # (N, K)
    truth = np.asarray((batch.falling & batch.person_mask).any(1))  # (N,)
    best = best_fall_threshold(presence, fall, truth)
    offset = model.fall_offset
    assert isinstance(offset, torch.Tensor)
    with torch.no_grad():
        offset.add_(float(np.log(best / (1.0 - best))))
    logger.info("fall threshold %.2f on %d windows, %d with a fall",
                best, len(batch), int(truth.sum()))
    return best


def best_fall_threshold(presence: FloatArray, fall: FloatArray, truth: np.ndarray) -> float:
    """The fall probability threshold of the best recall at precision ≥ FALL_MIN_PRECISION
    (of equal recall, the highest threshold), or 0.5 where none is that precise. A window
    is flagged when a reported person (presence (N, K) ≥ 0.5) has fall (N, K) ≥ it;
    truth (N,) says which windows hold a fall."""
    score = np.where(presence >= PRESENCE_THRESHOLD, fall, 0.0).max(1)  # (N,)
    best, best_recall = 0.5, 0.0
    for t in np.round(np.linspace(0.01, 0.95, 95), 2):
        flagged = score >= t
        hits = int((flagged & truth).sum())
        if not hits or hits < FALL_MIN_PRECISION * int(flagged.sum()):
            continue
        recall = hits / max(int(truth.sum()), 1)
        if recall >= best_recall:
            best, best_recall = float(t), recall
    return best


def classical_from_mean_pose(mean_pose: MeanPoseStats) -> ClassicalEstimator:
    """The classical estimator with the training set's mean pose and hip height."""
    n = max(mean_pose.n_persons, 1)
    offsets = mean_pose.offset_sum_m / n  # (J, 3) joints around the hip centre
    return ClassicalEstimator(pose_offsets_m=offsets.astype(np.float32),
                              hip_height_fraction=float(mean_pose.centre_norm_sum[2] / n))


@dataclass
class _Column:
    """The accumulators of one evaluated predictor."""

    poses: MetricAccumulator
    places: LocationAccumulator = field(default_factory=LocationAccumulator)

    def update(
        self, batch: WindowBatch, presence: FloatArray, keypoints: FloatArray,
        fall: FloatArray, count: np.ndarray | None = None,
    ) -> None:
        truth = (batch.keypoints_m, batch.person_mask, batch.falling, batch.room_size_m)
        self.poses.update(presence, keypoints, fall, *truth, count)
        self.places.update(presence, keypoints, batch.keypoints_m, batch.person_mask,
                           batch.activity, batch.n_routers, count)

    def result(self) -> dict[str, Any]:
        return {**self.poses.result(), **self.places.result()}


def evaluate_batches(
    model: PoseNet | None,
    batches: Iterable[WindowBatch],
    mean_pose: MeanPoseStats,
    project: Projection | None,
    device: torch.device | str = "cpu",
    batch_size: int = 64,
    classical: bool = True,
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], int]:
    """Metrics of the model, the mean-pose baseline and the classical estimator; windows seen.

    ``model`` None: the classical estimator is the model. ``classical`` False skips it
    (its column stays empty: training's validation needs only the model).
    """
    if model is None and not classical:
        raise ModelError("nothing to evaluate: no model and no classical estimator")
    ours, base, classic = (_Column(MetricAccumulator(project=project)) for _ in range(3))
    estimator = classical_from_mean_pose(mean_pose) if classical else None
    k = MAX_PERSONS if model is None else model.cfg.max_persons
    windows = 0
    for batch in batches:
        if len(batch) == 0:
            continue
        windows += len(batch)
        if estimator is not None:
            c_presence, c_keypoints = estimator.predict_batch(batch)
            classic.update(batch, c_presence, c_keypoints, np.zeros_like(c_presence))
        if model is not None:
            presence, keypoints, fall = predict_arrays(model, batch, device, batch_size)
            ours.update(batch, presence, keypoints, fall)
        counts = batch.person_mask.sum(1)  # (N,) the true count: pose metrics on equal terms
        b_presence, b_keypoints = mean_pose.predict(batch.room_size_m, counts, k)
        majority = np.full(len(batch), mean_pose.majority_count)
        base.update(batch, b_presence, b_keypoints, np.zeros_like(b_presence), majority)
    model_result = classic.result() if model is None else ours.result()
    return model_result, base.result(), classic.result(), windows


def simulator_batches(
    split: str, seed: int, n_windows: int, chunk: int = EVAL_CHUNK, **options: Any
) -> Iterator[WindowBatch]:
    """``n_windows`` windows of a split, generated ``chunk`` at a time (deterministic in seed).

    ``options`` go to ``generate_batch`` (e.g. ``routers=2``).
    """
    generate_batch = simulator_generate()
    for index, start in enumerate(range(0, n_windows, chunk)):
        chunk_seed = int(np.random.SeedSequence([seed, index]).generate_state(1)[0])
        yield generate_batch(split, chunk_seed, min(chunk, n_windows - start), **options)


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
    routers: int | None = None,
    hardware: str | None = None,
    calibrated_rad: float | None = None,
) -> Evaluation:
    """Load a checkpoint and evaluate it on ``n_windows`` simulator windows of ``split``.

    ``persons``: score only the windows (of those ``n_windows``) holding exactly that many
    people, e.g. 1 for the single-person numbers; ``Evaluation.windows`` says how many.
    ``routers``: simulate spaces with exactly that many routers (default: 1-4 mixed);
    ``hardware``: every router of that simulator profile (default: the split's mix).
    ``calibrated_rad``: multi-antenna routers carry measured chain phases with this
    error (``generate_batch``); default none are calibrated.
    ``path`` "classical": evaluate the classical estimator, with no weights.
    """
    if split not in (*EVAL_SPLITS, "val"):
        raise ModelError(f"unknown split {split!r}; choose one of {', '.join(EVAL_SPLITS)}")
    if persons is not None and not 0 <= persons <= MAX_PERSONS:
        raise ModelError(f"persons must be 0..{MAX_PERSONS}, got {persons}")
    if routers is not None and not 1 <= routers <= MAX_ROUTERS:
        raise ModelError(f"routers must be 1..{MAX_ROUTERS}, got {routers}")
    classical_only = str(path) == CLASSICAL
    model: PoseNet | None = None
    mean_pose: MeanPoseStats | None = None
    if not classical_only:
        loaded = load_model(path, device)
        model, mean_pose = loaded.model, loaded.mean_pose
    if mean_pose is None or mean_pose.n_persons == 0:
        if not classical_only:
            logger.warning("checkpoint %s has no mean pose; drawing it from the train split", path)
        mean_pose = baseline_from_simulator(seed)
    project = front_projection()
    options: dict[str, Any] = {"floor_maps": model is not None and model.cfg.space_inputs}
    if routers is not None:
        options["routers"] = routers
    if hardware is not None:
        options["hardware"] = hardware
    if calibrated_rad is not None:
        if not 0.0 <= calibrated_rad <= 10.0:
            raise ModelError(f"calibrated_rad must be 0..10 radians, got {calibrated_rad}")
        options["calibrated_rad"] = calibrated_rad
    batches = simulator_batches(split, seed, n_windows, **options)
    if persons is not None:
        batches = (
            take(b, np.flatnonzero(b.person_mask.sum(1) == persons)) for b in batches
        )
    try:
        model_metrics, base_metrics, classic_metrics, windows = evaluate_batches(
            model, batches, mean_pose, project, device, batch_size
        )
    except (ValueError, RuntimeError) as exc:  # the model does not fit the simulator's windows
        raise ModelError(f"evaluation on {split} failed: {exc}") from exc
    return Evaluation(split, seed, windows, model_metrics, base_metrics, classic_metrics,
                      persons, routers, hardware)
