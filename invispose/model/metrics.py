"""Pose metrics: MPJPE, PA-MPJPE, PCK-3D, COCO OKS AP, person counts, falls; a mean-pose baseline.

Pure numpy. Persons are matched to predictions by the Hungarian algorithm on mean joint
distance. 3-D errors are taken at the true person count (the most confident slots), so the
model and the mean-pose baseline are compared on the same persons; detection quality is
measured separately by OKS AP (all slots ranked by presence) and count accuracy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from invispose.schemas import MAX_PERSONS, N_KEYPOINTS, BoolArray, FloatArray

#: COCO keypoint sigmas in COCO_KEYPOINTS order (left before right)
OKS_SIGMAS = (
    np.array(
        [.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87, .89, .89]
    )
    / 10.0
)
#: COCO's OKS thresholds .50:.05:.95
OKS_THRESHOLDS = np.round(np.arange(0.50, 0.951, 0.05), 2)
#: COCO interpolates precision at 101 recall points
RECALL_POINTS = np.linspace(0.0, 1.0, 101)
#: the seed's front view is a 1280×720 drawing; OKS scales are taken in its pixels
VIEW_SIZE_PX = (1280.0, 720.0)
PCK_THRESHOLD_M = 0.150
PRESENCE_THRESHOLD = 0.5
FALL_THRESHOLD = 0.5
LEFT_HIP, RIGHT_HIP = 11, 12

#: maps (..., 3) room points and the (3,) room size to (..., 2) view coordinates in 0–1
Projection = Callable[[FloatArray, FloatArray], FloatArray]


def match_persons(pred: FloatArray, true: FloatArray) -> tuple[np.ndarray, np.ndarray]:
    """Indices (pred_idx, true_idx) pairing pred (M, J, 3) with true (G, J, 3) persons."""
    if len(pred) == 0 or len(true) == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty
    cost = np.linalg.norm(pred[:, None] - true[None], axis=-1).mean(-1)  # (M, G)
    rows, cols = linear_sum_assignment(cost)
    return rows.astype(np.int64), cols.astype(np.int64)


def joint_errors_m(pred: FloatArray, true: FloatArray) -> FloatArray:
    """Euclidean error per joint (n, J) of matched persons pred, true (n, J, 3)."""
    errors: FloatArray = np.linalg.norm(pred - true, axis=-1).astype(np.float32)
    return errors


def procrustes_align(pred: FloatArray, true: FloatArray) -> FloatArray:
    """pred (J, 3) moved onto true (J, 3) by the best scale, rotation and translation."""
    mu_p, mu_t = pred.mean(0), true.mean(0)
    x, y = pred - mu_p, true - mu_t  # (J, 3)
    norm_x = float((x**2).sum())
    if norm_x <= 1e-12:
        return np.broadcast_to(mu_t, pred.shape).astype(np.float32)
    u, s, vt = np.linalg.svd(x.T @ y)  # x.T @ y: (3, 3)
    if np.linalg.det(vt.T @ u.T) < 0:  # a reflection: flip the weakest axis
        vt[-1] *= -1
        s[-1] *= -1
    rotation = vt.T @ u.T  # (3, 3)
    scale = float(s.sum()) / norm_x
    aligned: FloatArray = (scale * x @ rotation.T + mu_t).astype(np.float32)
    return aligned


def pa_joint_errors_m(pred: FloatArray, true: FloatArray) -> FloatArray:
    """Per-joint errors (n, J) after Procrustes alignment of each person."""
    aligned = [procrustes_align(p, t) for p, t in zip(pred, true, strict=True)]
    return joint_errors_m(np.stack(aligned) if aligned else pred, true)


def box_area_px2(points_px: FloatArray) -> FloatArray:
    """Area of the keypoints' bounding box (G,) for points (G, J, 2) in pixels."""
    extent = points_px.max(axis=1) - points_px.min(axis=1)  # (G, 2)
    area: FloatArray = np.maximum(extent[:, 0] * extent[:, 1], 1.0).astype(np.float32)
    return area


def oks_matrix(pred_px: FloatArray, true_px: FloatArray, area_px2: FloatArray) -> FloatArray:
    """COCO OKS (D, G) between pred (D, J, 2) and true (G, J, 2) keypoints, all visible."""
    d2 = ((pred_px[:, None] - true_px[None]) ** 2).sum(-1)  # (D, G, J)
    k2 = (2.0 * OKS_SIGMAS) ** 2  # (J,)
    e = d2 / (2.0 * area_px2[None, :, None] * k2)  # (D, G, J)
    oks: FloatArray = np.exp(-e).mean(-1).astype(np.float32)  # (D, G)
    return oks


def average_precision(
    scores: list[FloatArray], oks: list[FloatArray], threshold: float
) -> float:
    """COCO AP at one OKS threshold; per window scores (D,) and OKS (D, G); nan if no persons."""
    n_true = sum(o.shape[1] for o in oks)
    if n_true == 0:
        return float("nan")
    all_scores: list[FloatArray] = []
    all_tp: list[BoolArray] = []
    for s, o in zip(scores, oks, strict=True):
        order = np.argsort(-s, kind="mergesort")
        taken = np.zeros(o.shape[1], bool)
        tp = np.zeros(len(s), bool)
        for rank, d in enumerate(order):
            # the best still-unmatched person at or above the threshold, as COCOeval does
            candidates = np.where(taken, -1.0, o[d])
            g = int(np.argmax(candidates)) if o.shape[1] else -1
            if g >= 0 and candidates[g] >= threshold:
                taken[g] = True
                tp[rank] = True
        all_scores.append(s[order])
        all_tp.append(tp)
    if sum(len(s) for s in scores) == 0:
        return 0.0
    ranked = np.argsort(-np.concatenate(all_scores), kind="mergesort")
    tp_flags = np.concatenate(all_tp)[ranked]
    tp_sum = np.cumsum(tp_flags)
    fp_sum = np.cumsum(~tp_flags)
    recall = tp_sum / n_true
    precision = tp_sum / np.maximum(tp_sum + fp_sum, 1)
    precision = np.maximum.accumulate(precision[::-1])[::-1]  # best precision at ≥ recall
    idx = np.searchsorted(recall, RECALL_POINTS, side="left")
    sampled = np.where(idx < len(precision), precision[np.minimum(idx, len(precision) - 1)], 0.0)
    return float(sampled.mean())


def oks_ap(scores: list[FloatArray], oks: list[FloatArray]) -> dict[str, float]:
    """AP averaged over OKS .50:.05:.95, AP50 and AP75."""
    per_t = {float(t): average_precision(scores, oks, float(t)) for t in OKS_THRESHOLDS}
    return {"oks_ap": float(np.mean(list(per_t.values()))), "ap50": per_t[0.5], "ap75": per_t[0.75]}


def ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, nan when the denominator is zero (undefined)."""
    return numerator / denominator if denominator > 0 else float("nan")


@dataclass
class MeanPoseStats:
    """Running sums of the training set's poses: the mean-pose baseline comes from them."""

    offset_sum_m: FloatArray = field(
        default_factory=lambda: np.zeros((N_KEYPOINTS, 3), np.float64)
    )  # (J, 3) joints relative to the hip centre
    centre_norm_sum: FloatArray = field(
        default_factory=lambda: np.zeros(3, np.float64)
    )  # (3,) hip centre / room size
    n_persons: int = 0
    count_hist: list[int] = field(default_factory=lambda: [0] * (MAX_PERSONS + 1))

    def update(self, keypoints_m: FloatArray, person_mask: BoolArray, room_m: FloatArray) -> None:
        """Add a batch: keypoints (N, P, J, 3), mask (N, P), room sizes (N, 3)."""
        centre = keypoints_m[:, :, [LEFT_HIP, RIGHT_HIP]].mean(axis=2)  # (N, P, 3)
        offsets = keypoints_m - centre[:, :, None]  # (N, P, J, 3)
        norm = centre / np.maximum(room_m[:, None], 1e-3)  # (N, P, 3)
        self.offset_sum_m += offsets[person_mask].sum(0)
        self.centre_norm_sum += norm[person_mask].sum(0)
        self.n_persons += int(person_mask.sum())
        counts = np.minimum(person_mask.sum(1), MAX_PERSONS)
        for c in counts:
            self.count_hist[int(c)] += 1

    def to_dict(self) -> dict[str, object]:
        """Checkpoint-safe plain values."""
        return {
            "offset_sum_m": self.offset_sum_m.tolist(),
            "centre_norm_sum": self.centre_norm_sum.tolist(),
            "n_persons": self.n_persons,
            "count_hist": list(self.count_hist),
        }

    @classmethod
    def from_dict(cls, values: dict[str, object]) -> MeanPoseStats:
        """Inverse of ``to_dict``."""
        return cls(
            offset_sum_m=np.asarray(values["offset_sum_m"], np.float64),
            centre_norm_sum=np.asarray(values["centre_norm_sum"], np.float64),
            n_persons=int(values["n_persons"]),  # type: ignore[call-overload]
            count_hist=[int(c) for c in values["count_hist"]],  # type: ignore[attr-defined]
        )

    def predict(
        self, room_m: FloatArray, counts: np.ndarray, max_persons: int = MAX_PERSONS
    ) -> tuple[FloatArray, FloatArray]:
        """Presence (N, K) and keypoints (N, K, J, 3): the mean pose, ``counts`` times."""
        n = max(self.n_persons, 1)
        pose = self.offset_sum_m / n  # (J, 3)
        centre = (self.centre_norm_sum / n)[None] * room_m  # (N, 3)
        keypoints = np.broadcast_to(
            (centre[:, None, :] + pose[None])[:, None], (len(room_m), max_persons, N_KEYPOINTS, 3)
        ).astype(np.float32)  # (N, K, J, 3)
        presence = (np.arange(max_persons)[None] < counts[:, None]).astype(np.float32)  # (N, K)
        return presence, keypoints

    @property
    def majority_count(self) -> int:
        """The most frequent person count per window in training."""
        return int(np.argmax(self.count_hist))


@dataclass
class MetricAccumulator:
    """Collects predictions window by window and reports every metric."""

    project: Projection | None = None
    errors_m: list[FloatArray] = field(default_factory=list)  # (n, J) per update
    pa_errors_m: list[FloatArray] = field(default_factory=list)
    ap_scores: list[FloatArray] = field(default_factory=list)
    ap_oks: list[FloatArray] = field(default_factory=list)
    windows: int = 0
    count_correct: int = 0
    fall_tp: int = 0
    fall_fp: int = 0
    fall_fn: int = 0

    def update(
        self,
        presence: FloatArray,
        keypoints_m: FloatArray,
        fall_prob: FloatArray,
        true_keypoints_m: FloatArray,
        person_mask: BoolArray,
        falling: BoolArray,
        room_m: FloatArray,
        count_pred: np.ndarray | None = None,
    ) -> None:
        """Add N windows: presence (N, K), keypoints (N, K, J, 3), fall probability (N, K)."""
        detected = presence >= PRESENCE_THRESHOLD  # (N, K)
        if count_pred is None:
            count_pred = detected.sum(1)
        true_count = person_mask.sum(1)  # (N,)
        self.count_correct += int((np.asarray(count_pred) == true_count).sum())
        fall_true = (falling & person_mask).any(1)  # (N,)
        fall_pred = (detected & (fall_prob >= FALL_THRESHOLD)).any(1)  # (N,)
        self.fall_tp += int((fall_true & fall_pred).sum())
        self.fall_fp += int((~fall_true & fall_pred).sum())
        self.fall_fn += int((fall_true & ~fall_pred).sum())
        self.windows += len(presence)
        for i in range(len(presence)):
            true = true_keypoints_m[i][person_mask[i]]  # (G, J, 3)
            top = np.argsort(-presence[i], kind="mergesort")[: len(true)]
            rows, cols = match_persons(keypoints_m[i][top], true)
            pred, gt = keypoints_m[i][top][rows], true[cols]  # (G, J, 3)
            self.errors_m.append(joint_errors_m(pred, gt))
            self.pa_errors_m.append(pa_joint_errors_m(pred, gt))
            if self.project is not None:
                view_px = np.array(VIEW_SIZE_PX)  # (2,)
                true_px = self.project(true, room_m[i]) * view_px  # (G, J, 2)
                pred_px = self.project(keypoints_m[i], room_m[i]) * view_px  # (K, J, 2)
                self.ap_scores.append(presence[i].astype(np.float32))
                self.ap_oks.append(oks_matrix(pred_px, true_px, box_area_px2(true_px)))

    def result(self) -> dict[str, float]:
        """Every metric; nan where undefined (no persons, no predicted falls, no projection)."""
        nan = float("nan")
        errors = np.concatenate([e.ravel() for e in self.errors_m] + [np.zeros(0)])
        pa = np.concatenate([e.ravel() for e in self.pa_errors_m] + [np.zeros(0)])
        has = errors.size > 0
        ap = oks_ap(self.ap_scores, self.ap_oks) if self.ap_oks else {}
        return {
            "mpjpe_mm": 1000.0 * float(errors.mean()) if has else nan,
            "pa_mpjpe_mm": 1000.0 * float(pa.mean()) if has else nan,
            "pck3d_150": float((errors < PCK_THRESHOLD_M).mean()) if has else nan,
            "oks_ap": ap.get("oks_ap", nan),
            "ap50": ap.get("ap50", nan),
            "ap75": ap.get("ap75", nan),
            "count_accuracy": ratio(self.count_correct, self.windows),
            "fall_precision": ratio(self.fall_tp, self.fall_tp + self.fall_fp),
            "fall_recall": ratio(self.fall_tp, self.fall_tp + self.fall_fn),
        }
