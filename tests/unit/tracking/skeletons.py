"""Hand-built COCO-17 skeletons and detections for the tracking tests."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

from invispose.config import SpaceConfig, ZoneConfig
from invispose.schemas import N_KEYPOINTS, Detection, Event
from invispose.tracking import Tracker, TrackerUpdate

F64 = npt.NDArray[np.float64]

# Offsets from the point on the floor below the hip centre, metres (x right, y forward, z up).
STANDING = np.array(
    [
        [0.0, 0.05, 1.62],  # nose
        [0.03, 0.04, 1.65],  # left_eye
        [-0.03, 0.04, 1.65],  # right_eye
        [0.07, 0.0, 1.63],  # left_ear
        [-0.07, 0.0, 1.63],  # right_ear
        [0.19, 0.0, 1.45],  # left_shoulder
        [-0.19, 0.0, 1.45],  # right_shoulder
        [0.23, 0.0, 1.18],  # left_elbow
        [-0.23, 0.0, 1.18],  # right_elbow
        [0.25, 0.02, 0.93],  # left_wrist
        [-0.25, 0.02, 0.93],  # right_wrist
        [0.1, 0.0, 0.95],  # left_hip
        [-0.1, 0.0, 0.95],  # right_hip
        [0.1, 0.02, 0.52],  # left_knee
        [-0.1, 0.02, 0.52],  # right_knee
        [0.1, 0.0, 0.08],  # left_ankle
        [-0.1, 0.0, 0.08],  # right_ankle
    ]
)
# On a chair: thighs forward (+y) and level, shins vertical, torso upright.
SITTING = np.array(
    [
        [0.0, 0.05, 1.15],  # nose
        [0.03, 0.04, 1.18],  # left_eye
        [-0.03, 0.04, 1.18],  # right_eye
        [0.07, 0.0, 1.16],  # left_ear
        [-0.07, 0.0, 1.16],  # right_ear
        [0.19, 0.0, 0.98],  # left_shoulder
        [-0.19, 0.0, 0.98],  # right_shoulder
        [0.23, 0.05, 0.72],  # left_elbow
        [-0.23, 0.05, 0.72],  # right_elbow
        [0.22, 0.3, 0.6],  # left_wrist
        [-0.22, 0.3, 0.6],  # right_wrist
        [0.1, 0.0, 0.48],  # left_hip
        [-0.1, 0.0, 0.48],  # right_hip
        [0.1, 0.45, 0.5],  # left_knee
        [-0.1, 0.45, 0.5],  # right_knee
        [0.1, 0.47, 0.08],  # left_ankle
        [-0.1, 0.47, 0.08],  # right_ankle
    ]
)
# On the floor, head towards +x.
LYING = np.array(
    [
        [0.72, 0.0, 0.2],  # nose
        [0.74, 0.03, 0.18],  # left_eye
        [0.74, -0.03, 0.18],  # right_eye
        [0.7, 0.07, 0.13],  # left_ear
        [0.7, -0.07, 0.13],  # right_ear
        [0.5, 0.19, 0.13],  # left_shoulder
        [0.5, -0.19, 0.13],  # right_shoulder
        [0.25, 0.25, 0.1],  # left_elbow
        [0.25, -0.25, 0.1],  # right_elbow
        [0.02, 0.27, 0.1],  # left_wrist
        [0.02, -0.27, 0.1],  # right_wrist
        [0.0, 0.1, 0.12],  # left_hip
        [0.0, -0.1, 0.12],  # right_hip
        [-0.43, 0.1, 0.1],  # left_knee
        [-0.43, -0.1, 0.1],  # right_knee
        [-0.86, 0.1, 0.07],  # left_ankle
        [-0.86, -0.1, 0.07],  # right_ankle
    ]
)
POSTURES = {"standing": STANDING, "sitting": SITTING, "lying": LYING}
assert all(p.shape == (N_KEYPOINTS, 3) for p in POSTURES.values())


def skeleton(posture: str | F64, x: float, y: float, wave: bool = False) -> F64:
    """A COCO-17 skeleton (17, 3) of a posture (name or offsets) standing at floor (x, y)."""
    offsets = POSTURES[posture] if isinstance(posture, str) else posture
    kp = offsets + np.array([x, y, 0.0])
    if wave:
        kp[9] = kp[5] + np.array([0.1, 0.0, 0.35])  # left wrist above the shoulder
        kp[7] = kp[5] + np.array([0.12, 0.0, 0.1])
    return np.asarray(kp, dtype=np.float64)


def blend(a: str, b: str, w: float) -> F64:
    """Posture offsets between ``a`` (w = 0) and ``b`` (w = 1)."""
    w = min(max(w, 0.0), 1.0)
    return np.asarray((1.0 - w) * POSTURES[a] + w * POSTURES[b], dtype=np.float64)


def detection(
    persons: Sequence[F64],
    t_s: float,
    router_id: str = "r1",
    space_id: str = "lab",
    slots: int = 4,
    conf: float = 0.9,
    presence: float = 0.95,
    latency: float = 3.0,
) -> Detection:
    """A model output with the given skeletons in the first slots and empty slots after."""
    k = max(slots, len(persons))
    kp = np.zeros((k, N_KEYPOINTS, 3), np.float32)
    kc = np.full((k, N_KEYPOINTS), 0.05, np.float32)
    pr = np.full(k, 0.02, np.float32)
    for i, person in enumerate(persons):
        kp[i] = person
        kc[i] = conf
        pr[i] = presence
    return Detection(router_id, space_id, t_s, pr, kp, kc, {"inference": latency})


def space(view: str = "front") -> SpaceConfig:
    """A 6 × 5 × 3 m room."""
    return SpaceConfig.model_validate({"id": "lab", "size_m": (6.0, 5.0, 3.0), "view": view})


def square_zone(
    zone_id: str,
    x0: float,
    y0: float,
    x1: float,
    y1: float,
    max_occupancy: int | None = None,
    restricted: bool = False,
) -> ZoneConfig:
    """A rectangular zone of the test room."""
    return ZoneConfig(
        id=zone_id,
        space="lab",
        name=zone_id.title(),
        polygon_m=[(x0, y0), (x1, y0), (x1, y1), (x0, y1)],
        max_occupancy=max_occupancy,
        restricted=restricted,
    )


def play(
    tracker: Tracker,
    scene: Callable[[float], Sequence[F64]],
    start_s: float,
    duration_s: float,
    rate_hz: float = 20.0,
    routers: Sequence[str] = ("r1",),
) -> list[TrackerUpdate]:
    """Feed ``scene(t)`` (skeletons at time t since start) to the tracker at ``rate_hz``."""
    updates = []
    for step in range(int(round(duration_s * rate_hz))):
        rel = step / rate_hz
        t = start_s + rel
        persons = scene(rel)
        updates.append(tracker.update([detection(persons, t, r) for r in routers], t))
    return updates


def events_of(updates: Sequence[TrackerUpdate], event_type: str) -> list[Event]:
    """Every event of one type, in order."""
    return [e for u in updates for e in u.events if e.type == event_type]
