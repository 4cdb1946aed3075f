"""The classical estimator: floor peaks of the back-projection, each with the mean pose.

It needs no weights (``model: classical`` in a site config), and it is the baseline every
evaluation table carries. The strongest fused-map peak is a person when its contrast (value
over the map's median) reaches ``contrast_threshold``; the pose is the training mean pose
(joints around the hip centre) stood at the peak. Presence is a logistic of the log
contrast around the threshold. Further peaks are ranked the same way but never reported
(presence below one half): on the val split they are mostly side lobes of the first, no
better than chance at telling a second person from none, so this estimator counts 0 or 1.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from invispose.localise.backprojection import RouterView
from invispose.localise.floor import FloorLocaliser, FloorResult
from invispose.localise.views import views_from_batch, views_from_windows
from invispose.schemas import (
    MAX_PERSONS,
    N_KEYPOINTS,
    CsiWindow,
    Detection,
    FloatArray,
    WindowBatch,
)

#: fused-map contrast from which the strongest peak is a person. Chosen on the val split
#: (seed 1, 300 space windows, 0-4 people, 1-4 mixed routers): about the best count
#: accuracy there (0.29; 58 % of one-person windows report one, 61 % of empty ones none)
CONTRAST_THRESHOLD = 1.5
SECONDARY_WEIGHT = 0.49  # presence scale of peaks after the first: ranked, never reported
PRESENCE_SLOPE = 4.0  # logistic slope per unit of log contrast

#: a standing adult's joints around the hip centre (metres, x/y flat, z up), COCO order;
#: used when no training statistics are at hand
STANDING_OFFSETS_M = np.array(
    [[0.0, 0.0, 0.62], [0.03, 0.0, 0.66], [-0.03, 0.0, 0.66], [0.07, 0.0, 0.64],
     [-0.07, 0.0, 0.64], [0.18, 0.0, 0.45], [-0.18, 0.0, 0.45], [0.22, 0.0, 0.17],
     [-0.22, 0.0, 0.17], [0.24, 0.0, -0.08], [-0.24, 0.0, -0.08], [0.1, 0.0, 0.0],
     [-0.1, 0.0, 0.0], [0.1, 0.0, -0.45], [-0.1, 0.0, -0.45], [0.1, 0.0, -0.88],
     [-0.1, 0.0, -0.88]],
    dtype=np.float32,
)  # (17, 3)
STANDING_HIP_M = 0.93


@dataclass(slots=True)
class ClassicalEstimator:
    """Floor localiser + mean pose: persons per space window, no learning."""

    localiser: FloorLocaliser = field(default_factory=FloorLocaliser)
    pose_offsets_m: FloatArray = field(default_factory=lambda: STANDING_OFFSETS_M.copy())
    hip_height_m: float = STANDING_HIP_M
    hip_height_fraction: float | None = None  # of the room height; overrides hip_height_m
    contrast_threshold: float = CONTRAST_THRESHOLD
    max_persons: int = MAX_PERSONS

    def estimate(
        self, views: Sequence[RouterView], room_size_m: npt.ArrayLike
    ) -> tuple[FloatArray, FloatArray, FloorResult]:
        """Presence (K,), keypoints (K, 17, 3) and the floor result of one space window.

        Slots beyond the peaks found have presence 0 and stand at the room centre.
        """
        room = np.asarray(room_size_m, np.float32).reshape(3)
        result = self.localiser.locate(views, room)
        k = self.max_persons
        presence = np.zeros(k, np.float32)  # (K,)
        hip_z = (self.hip_height_m if self.hip_height_fraction is None
                 else self.hip_height_fraction * float(room[2]))
        centres = np.tile(np.array([room[0] / 2, room[1] / 2, hip_z], np.float32), (k, 1))
        for i, peak in enumerate(result.peaks[:k]):
            if i == 0:
                score = np.log(max(peak.contrast, 1e-6) / self.contrast_threshold)
                presence[0] = 1.0 / (1.0 + np.exp(-PRESENCE_SLOPE * score))
            else:  # below the first and below one half, in contrast order
                ratio = peak.contrast / max(result.peaks[0].contrast, 1e-6)
                presence[i] = SECONDARY_WEIGHT * presence[0] * min(ratio, 1.0)
            centres[i, :2] = peak.xy_m
        keypoints = centres[:, None, :] + self.pose_offsets_m[None]  # (K, 17, 3)
        return presence, keypoints.astype(np.float32), result

    def detect(self, windows: Sequence[CsiWindow]) -> Detection:
        """One Detection for a space's router windows of one hop, fused on the floor."""
        if not windows:
            raise ValueError("a space hop needs at least one window")
        started = time.perf_counter()
        presence, keypoints, _ = self.estimate(views_from_windows(windows),
                                               windows[0].room_size_m)
        return Detection(
            router_id="+".join(w.router_id for w in windows),
            space_id=windows[0].space_id,
            t_end_s=max(w.t_end_s for w in windows),
            presence=presence,
            keypoints_m=keypoints,
            keypoint_conf=np.repeat(presence[:, None], keypoints.shape[1], axis=1),
            latency_ms={"inference": 1000.0 * (time.perf_counter() - started)},
        )

    def predict_batch(self, batch: WindowBatch) -> tuple[FloatArray, FloatArray]:
        """Presence (N, K) and keypoints (N, K, 17, 3) for every space window of a batch."""
        n, k = len(batch), self.max_persons
        presence = np.zeros((n, k), np.float32)
        keypoints = np.zeros((n, k, N_KEYPOINTS, 3), np.float32)
        for i in range(n):
            presence[i], keypoints[i], _ = self.estimate(
                views_from_batch(batch, i), batch.room_size_m[i]
            )
        return presence, keypoints
