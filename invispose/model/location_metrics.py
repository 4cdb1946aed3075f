"""Location metrics: where people are, scored apart from how many there are.

Pure numpy (plus scipy's Hungarian solver), the companion of ``metrics.py``.

- **Localisation is scored separately from counting.** In each window with ``c`` true
  people, the ``c`` most present slots (ranked by presence, regardless of the threshold) are
  matched to the true people by the Hungarian algorithm on hip-centre floor distance: the
  (x, y) of the mean of keypoints 11 and 12 (left and right hip). Every true person therefore
  contributes exactly one matched pair, so a model cannot improve its location numbers by
  reporting fewer people; counting is judged on its own by the count keys.
- ``root_error_m``: ``{"median", "p90"}`` of that floor distance in metres over all true persons.
- ``root_relative_mpjpe_mm``: mean joint error in millimetres over the matched pairs after
  subtracting each person's own 3-D hip centre from its keypoints (predicted from predicted,
  true from true), so it measures the pose and not where the pose stands.
- ``count_accuracy``: fraction of windows whose reported count equals the true count.
  The reported count is the caller's, or by default the number of slots whose presence is at
  least ``presence_threshold``.
- ``count_confusion``: nested list ``[true][reported]`` of window counts, of size
  ``(max_persons + 1) × (max_persons + 1)``; both counts are clipped to ``0..max_persons``.
- ``one_person_exactly_one``: among windows with exactly one true person, the fraction
  reporting exactly one.
- ``persons`` (true persons scored) and ``windows`` (windows seen).
- ``by_routers``: the same keys (less the two splits) per router count, keyed ``"1"``..``"4"``,
  only for router counts that occurred.
- ``by_motion``: ``{"walking", "still"}`` with the location keys and ``persons`` only, since
  counting is per window. A person is walking when its activity is ``"walking"`` in
  ``ACTIVITIES``; any other activity (standing, sitting, lying, fallen, waving) is still.

Undefined values (no persons, no windows, no one-person windows) are NaN, never exceptions.
``result()`` holds only dicts, lists, str, int and float, so it is JSON-serialisable once NaN
is replaced by None.
"""

from __future__ import annotations

from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
from scipy.optimize import linear_sum_assignment

from invispose.model.metrics import LEFT_HIP, RIGHT_HIP
from invispose.schemas import ACTIVITIES, MAX_PERSONS, N_KEYPOINTS, BoolArray, FloatArray

WALKING = ACTIVITIES.index("walking")
#: the location keys, the only ones that make sense per person (by motion)
MOTIONS = ("walking", "still")

Float64Array = npt.NDArray[np.float64]
Int64Array = npt.NDArray[np.int64]
_Float = TypeVar("_Float", bound=np.floating[Any])


def hip_centre(keypoints_m: FloatArray) -> FloatArray:
    """Mean of the two hips: (..., 17, 3) keypoints to (..., 3) points."""
    return _hip_centre(keypoints_m)


def _hip_centre(keypoints_m: npt.NDArray[_Float]) -> npt.NDArray[_Float]:
    """``hip_centre`` for any float dtype, which it keeps (metrics are taken in float64)."""
    centre: npt.NDArray[_Float] = keypoints_m[..., [LEFT_HIP, RIGHT_HIP], :].mean(axis=-2)
    return centre  # (..., 3)


def _ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, NaN when the denominator is zero."""
    return float(numerator) / float(denominator) if denominator > 0 else float("nan")


def _spread(values: Float64Array) -> dict[str, float]:
    """Median and 90th percentile of (n,) values; NaN for none."""
    if values.size == 0:
        return {"median": float("nan"), "p90": float("nan")}
    median, p90 = np.percentile(values, [50.0, 90.0])
    return {"median": float(median), "p90": float(p90)}


def _mean(values: Float64Array) -> float:
    """Mean of (n,) values as a plain float; NaN for none."""
    return float(values.mean()) if values.size else float("nan")


class LocationAccumulator:
    """Where people are: hip-centre floor error, root-relative MPJPE, counts; by routers, motion."""

    def __init__(self, presence_threshold: float = 0.5, max_persons: int = MAX_PERSONS) -> None:
        if max_persons < 1:
            raise ValueError(f"max_persons must be at least 1, got {max_persons}")
        self.presence_threshold = presence_threshold
        self.max_persons = max_persons
        # one entry per update, concatenated in result()
        self._root_error_m: list[Float64Array] = []  # (n,) floor distance per true person
        self._pose_error_m: list[Float64Array] = []  # (n,) mean root-relative joint error
        self._walking: list[BoolArray] = []  # (n,) the person walks
        self._person_routers: list[Int64Array] = []  # (n,) routers of the person's window
        self._true_count: list[Int64Array] = []  # (N,)
        self._reported_count: list[Int64Array] = []  # (N,)
        self._window_routers: list[Int64Array] = []  # (N,)

    def update(
        self,
        presence: FloatArray,  # (N, K) probability per predicted slot
        keypoints_m: FloatArray,  # (N, K, 17, 3) predicted, room metres, z up
        true_keypoints_m: FloatArray,  # (N, P, 17, 3)
        person_mask: BoolArray,  # (N, P) the true slot holds a person
        activity: np.ndarray,  # (N, P) int8 index into ACTIVITIES, -1 for empty
        n_routers: np.ndarray,  # (N,) routers in the window's space (1..4)
        count: np.ndarray | None = None,  # (N,) reported count; default: presence ≥ threshold
    ) -> None:
        """Add N windows of predictions and ground truth."""
        score = np.asarray(presence, np.float64)  # (N, K)
        pred = np.asarray(keypoints_m, np.float64)
        true = np.asarray(true_keypoints_m, np.float64)
        mask = np.asarray(person_mask, bool)
        activity = np.asarray(activity)
        routers = np.asarray(n_routers, np.int64).reshape(-1)
        _check_shapes(score, pred, true, mask, activity, routers)
        if count is None:
            reported = (score >= self.presence_threshold).sum(1).astype(np.int64)  # (N,)
        else:
            reported = np.asarray(count, np.int64).reshape(-1)
            if reported.shape != routers.shape:
                raise ValueError(f"count has shape {reported.shape}, expected ({len(routers)},)")
        true_count = mask.sum(1).astype(np.int64)  # (N,)
        if (true_count > score.shape[1]).any():
            raise ValueError(
                f"a window holds {int(true_count.max())} true persons but the model predicts "
                f"only {score.shape[1]} slots"
            )

        pred_hip, true_hip = _hip_centre(pred), _hip_centre(true)  # (N, K, 3), (N, P, 3)
        pred_rel = pred - pred_hip[:, :, None]  # (N, K, J, 3)
        true_rel = true - true_hip[:, :, None]  # (N, P, J, 3)
        order = np.argsort(-score, axis=1, kind="stable")  # (N, K) most present first
        pred_idx: list[Int64Array] = []  # matched slots, window by window
        true_idx: list[Int64Array] = []  # matched true slots
        window_idx: list[Int64Array] = []
        for i in np.flatnonzero(true_count):
            people = np.flatnonzero(mask[i])  # (c,)
            top = order[i, : len(people)]  # (c,)
            floor = pred_hip[i, top, :2][:, None] - true_hip[i, people, :2][None]  # (c, c, 2)
            rows, cols = linear_sum_assignment(np.linalg.norm(floor, axis=-1))
            pred_idx.append(top[rows])
            true_idx.append(people[cols])
            window_idx.append(np.full(len(rows), i, np.int64))
        win = np.concatenate([np.zeros(0, np.int64), *window_idx])  # (n,)
        p = np.concatenate([np.zeros(0, np.int64), *pred_idx])  # (n,)
        t = np.concatenate([np.zeros(0, np.int64), *true_idx])  # (n,)

        floor_error = pred_hip[win, p, :2] - true_hip[win, t, :2]  # (n, 2)
        joint_error = np.linalg.norm(pred_rel[win, p] - true_rel[win, t], axis=-1)  # (n, J)
        self._root_error_m.append(np.linalg.norm(floor_error, axis=-1))
        self._pose_error_m.append(joint_error.mean(axis=-1))
        self._walking.append(activity[win, t] == WALKING)
        self._person_routers.append(routers[win])
        self._true_count.append(true_count)
        self._reported_count.append(reported)
        self._window_routers.append(routers)

    def result(self) -> dict[str, object]:
        """Every location and count metric, overall, per router count and per motion."""
        root = np.concatenate([np.zeros(0), *self._root_error_m])  # (n,)
        pose = np.concatenate([np.zeros(0), *self._pose_error_m])  # (n,)
        walking = np.concatenate([np.zeros(0, bool), *self._walking])  # (n,)
        person_routers = np.concatenate([np.zeros(0, np.int64), *self._person_routers])
        true_count = np.concatenate([np.zeros(0, np.int64), *self._true_count])  # (N,)
        reported = np.concatenate([np.zeros(0, np.int64), *self._reported_count])  # (N,)
        window_routers = np.concatenate([np.zeros(0, np.int64), *self._window_routers])

        def group(persons: BoolArray, windows: BoolArray) -> dict[str, object]:
            return {
                **_location(root[persons], pose[persons]),
                **self._counts(true_count[windows], reported[windows]),
            }

        everyone = np.ones(len(root), bool)
        out = group(everyone, np.ones(len(true_count), bool))
        out["by_routers"] = {
            str(int(r)): group(person_routers == r, window_routers == r)
            for r in np.unique(window_routers)
        }
        motion = {"walking": walking, "still": ~walking}
        out["by_motion"] = {
            name: _location(root[motion[name]], pose[motion[name]]) for name in MOTIONS
        }
        return out

    def _counts(self, true_count: Int64Array, reported: Int64Array) -> dict[str, object]:
        """Count keys over (W,) true and reported counts of some windows."""
        top = self.max_persons
        confusion = np.zeros((top + 1, top + 1), np.int64)  # (true, reported)
        np.add.at(confusion, (np.clip(true_count, 0, top), np.clip(reported, 0, top)), 1)
        single = true_count == 1  # (W,)
        return {
            "windows": int(len(true_count)),
            "count_accuracy": _ratio(int((reported == true_count).sum()), len(true_count)),
            "count_confusion": [[int(n) for n in row] for row in confusion],
            "one_person_exactly_one": _ratio(int((reported[single] == 1).sum()), int(single.sum())),
        }


def _location(root_error_m: Float64Array, pose_error_m: Float64Array) -> dict[str, object]:
    """Location keys over (n,) floor errors and (n,) mean root-relative joint errors, metres."""
    return {
        "root_error_m": _spread(root_error_m),
        "root_relative_mpjpe_mm": 1000.0 * _mean(pose_error_m),
        "persons": int(len(root_error_m)),
    }


def _check_shapes(
    presence: Float64Array,
    pred: Float64Array,
    true: Float64Array,
    mask: BoolArray,
    activity: np.ndarray,
    routers: Int64Array,
) -> None:
    """Raise ValueError naming the first array whose shape disagrees with presence (N, K)."""
    if presence.ndim != 2:
        raise ValueError(f"presence must be (N, K), got shape {presence.shape}")
    n, k = presence.shape
    p = mask.shape[1] if mask.ndim == 2 else -1
    expected = {
        "keypoints_m": (pred.shape, (n, k, N_KEYPOINTS, 3)),
        "person_mask": (mask.shape, (n, p)),
        "true_keypoints_m": (true.shape, (n, p, N_KEYPOINTS, 3)),
        "activity": (activity.shape, (n, p)),
        "n_routers": (routers.shape, (n,)),
    }
    for name, (shape, want) in expected.items():
        if shape != want:
            raise ValueError(f"{name} has shape {shape}, expected {want}")
