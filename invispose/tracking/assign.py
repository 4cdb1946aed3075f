"""From detections to observations, and observations to tracks.

Each router's model output holds K person slots; slots above the presence threshold are
candidates. Candidates from different routers that lie close together in room coordinates
are one person seen twice and are fused into one observation (confidence-weighted keypoint
average). Observations are then assigned to tracks with the Hungarian algorithm on the
distance between each track's predicted body centre and each observation's centre.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from scipy.optimize import linear_sum_assignment

from invispose.schemas import N_KEYPOINTS, Detection

logger = logging.getLogger(__name__)

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

LEFT_HIP, RIGHT_HIP = 11, 12
#: added to each hip's confidence when weighting the body centre
MIN_HIP_WEIGHT = 1e-3
#: cost of an assignment outside the gate; larger than any sum of gated distances
INFEASIBLE = 1e6


@dataclass(slots=True)
class Candidates:
    """Person slots above the presence threshold, from every router of one update."""

    keypoints_m: F64  # (M, 17, 3) room metres
    keypoint_conf: F64  # (M, 17) 0–1
    presence: F64  # (M,) 0–1
    router_index: I64  # (M,) index into router_ids
    router_ids: list[str] = field(default_factory=list)  # routers that sent a usable detection
    newest_t_end_s: float | None = None
    latency_ms: dict[str, float] = field(default_factory=dict)  # worst per stage
    rejected: int = 0  # detections dropped for bad shape or another space

    def __len__(self) -> int:
        return int(self.presence.shape[0])


@dataclass(slots=True)
class Observations:
    """Fused candidates: one entry per person seen in this update."""

    keypoints_m: F64  # (C, 17, 3)
    keypoint_conf: F64  # (C, 17)
    presence: F64  # (C,)
    centre_m: F64  # (C, 3) body centre (confidence-weighted hip centre)
    n_views: I64  # (C,) routers that saw the person

    def __len__(self) -> int:
        return int(self.presence.shape[0])


def gather_candidates(
    detections: list[Detection], space_id: str, min_presence: float
) -> Candidates:
    """Collect the slots above ``min_presence`` from the newest detection of each router."""
    newest: dict[str, Detection] = {}
    rejected = 0
    for det in detections:
        k = det.presence.shape[0] if det.presence.ndim == 1 else -1
        if det.space_id != space_id:
            logger.debug("detection of space %r sent to tracker of %r", det.space_id, space_id)
            rejected += 1
            continue
        if (
            k < 0
            or det.keypoints_m.shape != (k, N_KEYPOINTS, 3)
            or det.keypoint_conf.shape != (k, N_KEYPOINTS)
        ):
            logger.debug("detection of router %r has inconsistent shapes", det.router_id)
            rejected += 1
            continue
        held = newest.get(det.router_id)
        if held is None or det.t_end_s >= held.t_end_s:
            newest[det.router_id] = det
    router_ids = sorted(newest)
    dets = [newest[r] for r in router_ids]
    latency: dict[str, float] = {}
    for det in dets:
        for stage, ms in det.latency_ms.items():
            latency[stage] = max(latency.get(stage, 0.0), float(ms))
    t_end = max((det.t_end_s for det in dets), default=None)
    if dets:
        presence = np.concatenate([det.presence for det in dets])  # (ΣK,)
        usable = presence >= min_presence  # NaN presence is never usable
    if not dets or not usable.any():
        return Candidates(
            np.zeros((0, N_KEYPOINTS, 3)),
            np.zeros((0, N_KEYPOINTS)),
            np.zeros(0),
            np.zeros(0, dtype=np.int64),
            router_ids,
            t_end,
            latency,
            rejected,
        )
    counts = [det.presence.shape[0] for det in dets]
    router = np.repeat(np.arange(len(dets), dtype=np.int64), counts)[usable]  # (M,)
    kp = np.concatenate([det.keypoints_m for det in dets])[usable].astype(np.float64)
    conf = np.concatenate([det.keypoint_conf for det in dets])[usable].astype(np.float64)
    pres = presence[usable].astype(np.float64)
    finite = np.isfinite(kp).all(axis=(1, 2))  # (M,) a skeleton with a NaN is unusable
    if not finite.all():
        kp, conf, pres, router = kp[finite], conf[finite], pres[finite], router[finite]
    conf = np.fmin(np.fmax(conf, 0.0), 1.0)  # fmax turns NaN into 0
    return Candidates(kp, conf, np.minimum(pres, 1.0), router, router_ids, t_end, latency, rejected)


def body_centre(keypoints_m: F64, keypoint_conf: F64) -> F64:
    """Confidence-weighted hip centre (N, 3) of skeletons (N, 17, 3).

    A small floor on the weights makes two doubtful hips count equally instead of not at
    all: the model always places every keypoint, confident or not.
    """
    # coordinates first, (3, N): numpy broadcasts over a long inner axis much faster than
    # over an inner axis of 3
    w_left = keypoint_conf[:, LEFT_HIP] + MIN_HIP_WEIGHT  # (N,)
    w_right = keypoint_conf[:, RIGHT_HIP] + MIN_HIP_WEIGHT
    centre = (keypoints_m[:, LEFT_HIP].T * w_left + keypoints_m[:, RIGHT_HIP].T * w_right) / (
        w_left + w_right
    )  # (3, N)
    return np.ascontiguousarray(centre.T)


def fuse(candidates: Candidates, fuse_distance_m: float) -> Observations:
    """Merge candidates of different routers that are the same person into observations.

    Greedy and deterministic: the strongest unassigned candidate seeds a cluster that takes,
    from every other router, its nearest unassigned candidate within ``fuse_distance_m``.
    """
    m = len(candidates)
    if m == 0:
        return Observations(
            np.zeros((0, N_KEYPOINTS, 3)),
            np.zeros((0, N_KEYPOINTS)),
            np.zeros(0),
            np.zeros((0, 3)),
            np.zeros(0, dtype=np.int64),
        )
    kp, conf, router = candidates.keypoints_m, candidates.keypoint_conf, candidates.router_index
    centres = body_centre(kp, conf)  # (M, 3)
    sq = np.einsum("md,md->m", centres, centres)  # (M,)
    dist2 = sq[:, None] + sq[None, :] - 2.0 * (centres @ centres.T)  # (M, M) squared distances
    limit2 = fuse_distance_m**2
    label = [-1] * m
    router_of = router.tolist()
    n_clusters = 0
    for seed in np.argsort(-candidates.presence, kind="stable").tolist():
        if label[seed] >= 0:
            continue
        label[seed] = n_clusters
        row = dist2[seed].tolist()  # plain floats: a Python scan of M beats numpy calls here
        near = sorted(
            (row[j], j)
            for j in range(m)
            if label[j] < 0 and row[j] <= limit2 and router_of[j] != router_of[seed]
        )
        taken = {router_of[seed]}
        for _, j in near:
            if router_of[j] not in taken:
                taken.add(router_of[j])
                label[j] = n_clusters
        n_clusters += 1
    labels = np.asarray(label, dtype=np.int64)  # (M,) cluster of each candidate
    member = (labels[None, :] == np.arange(n_clusters)[:, None]).astype(np.float64)  # (C, M)
    # a small floor on the weights: keypoints nobody is sure of are plainly averaged
    w = conf + 1e-6  # (M, 17)
    w_sum = member @ w  # (C, 17)
    # flatten keypoints to (M, 51) with each weight repeated per coordinate: contiguous math
    w3 = np.repeat(w, 3, axis=1)  # (M, 51)
    kp_sum = member @ (w3 * kp.reshape(m, -1))  # (C, 51)
    fused_kp = (kp_sum / np.repeat(w_sum, 3, axis=1)).reshape(n_clusters, N_KEYPOINTS, 3)
    fused_conf = np.minimum((member @ (conf * conf)) / w_sum, 1.0)  # self-weighted mean
    presence = (member * candidates.presence).max(axis=1)  # (C,)
    return Observations(
        fused_kp,
        fused_conf,
        presence,
        body_centre(fused_kp, fused_conf),
        member.sum(axis=1).astype(np.int64),
    )


def match(
    predicted_m: F64, observed_m: F64, gate_m: F64, z_weight: float = 0.5
) -> tuple[list[tuple[int, int]], list[int], list[int]]:
    """Assign observations (C, 3) to track predictions (N, 3) inside per-track gates (N,).

    The distance down-weights height by ``z_weight`` (a person who sits down or falls keeps
    their place on the floor). Returns (track, observation) pairs and the unmatched indices
    of both sides.
    """
    n, c = predicted_m.shape[0], observed_m.shape[0]
    if n == 0 or c == 0:
        return [], list(range(n)), list(range(c))
    scale = np.array([1.0, 1.0, z_weight])
    diff = (predicted_m * scale)[:, None, :] - (observed_m * scale)[None, :, :]  # (N, C, 3)
    dist = np.sqrt(np.einsum("ncd,ncd->nc", diff, diff))  # (N, C)
    feasible = dist <= gate_m[:, None]
    cost = np.where(feasible, dist, INFEASIBLE)
    rows, cols = linear_sum_assignment(cost)
    pairs = [(int(r), int(o)) for r, o in zip(rows, cols, strict=True) if feasible[r, o]]
    matched_t = {t for t, _ in pairs}
    matched_o = {o for _, o in pairs}
    return (
        pairs,
        [t for t in range(n) if t not in matched_t],
        [o for o in range(c) if o not in matched_o],
    )
