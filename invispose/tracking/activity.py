"""Activity of a tracked person from skeleton geometry and speed, with fall detection.

Postures come from a few numbers per skeleton: hip height, head height, the torso's angle
to the vertical, the knee angles and how far a wrist rises above its shoulder. Walking is
an upright posture that moves. A new label must persist ``hold_s`` before it replaces the
current one, so a noisy frame does not flip the activity.

A fall is a rapid drop (hip or head falling faster than ``fall_velocity_mps``) followed
within ``fall_window_s`` by a lying posture near the floor; it is reported once, and the
activity stays ``fallen`` until the person gets up.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from invispose.schemas import ACTIVITIES

WALKING, STANDING, SITTING, LYING, FALLEN, WAVING = ACTIVITIES
HEAD = (0, 1, 2, 3, 4)
L_SHOULDER, R_SHOULDER, L_WRIST, R_WRIST = 5, 6, 9, 10
L_HIP, R_HIP, L_KNEE, R_KNEE, L_ANKLE, R_ANKLE = 11, 12, 13, 14, 15, 16
#: labels that count as "got up" after a fall
UPRIGHT = (STANDING, WALKING, WAVING)


@dataclass(frozen=True, slots=True)
class ActivityParams:
    """Thresholds of the posture classifier and the fall detector."""

    hold_s: float = 0.5  # a new activity must persist this long
    upright_max_deg: float = 40.0  # torso within this of vertical: standing/sitting/walking
    lying_min_deg: float = 60.0  # torso beyond this from vertical: lying
    lying_max_hip_m: float = 0.6  # lying happens near the floor
    sit_knee_max_deg: float = 135.0  # knees bent more than this: sitting
    sit_max_hip_m: float = 0.65  # hips this low with an upright torso: sitting
    walk_speed_mps: float = 0.3  # horizontal speed of walking
    wave_above_shoulder_m: float = 0.1  # wrist this far above its shoulder: waving
    min_keypoint_conf: float = 0.2  # keypoints below this do not vote
    fall_velocity_mps: float = -1.0  # hip or head vertical velocity of a fall
    fall_window_s: float = 2.0  # the lying posture must follow the drop within this
    fall_min_drop_m: float = 0.5  # the head must have come down at least this much
    get_up_hip_m: float = 0.35  # sitting with hips above this ends a fall (a chair)
    severe_speed_mps: float = 1.8  # falls faster than this are "high" severity


@dataclass(slots=True)
class Posture:
    """Geometry of one skeleton; NaN where the needed keypoints are not confident."""

    hip_z: float  # hip centre height, metres
    head_z: float  # head height, metres
    torso_deg: float  # angle of hip→shoulder to the vertical
    knee_deg: float  # mean inner knee angle (180 = straight)
    wrist_rise_m: float  # highest wrist above its shoulder (-inf when no arm is seen)
    mean_conf: float  # mean keypoint confidence


NAN = float("nan")
_SIDES = (
    (L_HIP, L_KNEE, L_ANKLE, L_WRIST, L_SHOULDER),
    (R_HIP, R_KNEE, R_ANKLE, R_WRIST, R_SHOULDER),
)


def _centroid(
    kp: list[list[float]], conf: list[float], joints: tuple[int, ...], min_conf: float
) -> tuple[float, float, float] | None:
    """Confidence-weighted mean of the confident joints, None when none is confident."""
    total = sx = sy = sz = 0.0
    for j in joints:
        c = conf[j]
        if c >= min_conf:
            x, y, z = kp[j]
            total += c
            sx += c * x
            sy += c * y
            sz += c * z
    if total <= 0.0:
        return None
    return sx / total, sy / total, sz / total


def _angle_deg(ax: float, ay: float, az: float, bx: float, by: float, bz: float) -> float:
    """Angle between two vectors, degrees (NaN when one has no length)."""
    norm = math.sqrt((ax * ax + ay * ay + az * az) * (bx * bx + by * by + bz * bz))
    if norm <= 1e-12:
        return NAN
    return math.degrees(math.acos(max(-1.0, min(1.0, (ax * bx + ay * by + az * bz) / norm))))


def posture(kp: list[list[float]], conf: list[float], params: ActivityParams) -> Posture:
    """Posture geometry of one skeleton: 17 [x, y, z] in metres and 17 confidences.

    Plain Python on lists: for the handful of persons in a room this is several times
    faster than numpy, whose per-call overhead dominates on arrays this small.
    """
    lo = params.min_keypoint_conf
    hips = _centroid(kp, conf, (L_HIP, R_HIP), lo)
    shoulders = _centroid(kp, conf, (L_SHOULDER, R_SHOULDER), lo)
    head = _centroid(kp, conf, HEAD, lo)
    torso = NAN
    if hips is not None and shoulders is not None:
        torso = _angle_deg(
            shoulders[0] - hips[0], shoulders[1] - hips[1], shoulders[2] - hips[2], 0.0, 0.0, 1.0
        )
    knees: list[float] = []
    rise = -math.inf
    for hip, knee, ankle, wrist, shoulder in _SIDES:
        if conf[hip] >= lo and conf[knee] >= lo and conf[ankle] >= lo:
            h, k, a = kp[hip], kp[knee], kp[ankle]
            angle = _angle_deg(
                h[0] - k[0], h[1] - k[1], h[2] - k[2], a[0] - k[0], a[1] - k[1], a[2] - k[2]
            )
            if not math.isnan(angle):
                knees.append(angle)
        if conf[wrist] >= lo and conf[shoulder] >= lo:
            rise = max(rise, kp[wrist][2] - kp[shoulder][2])
    return Posture(
        hip_z=hips[2] if hips is not None else NAN,
        head_z=head[2] if head is not None else NAN,
        torso_deg=torso,
        knee_deg=sum(knees) / len(knees) if knees else NAN,
        wrist_rise_m=rise,
        mean_conf=sum(conf) / len(conf),
    )


def classify_posture(features: Posture, speed_mps: float, params: ActivityParams) -> str | None:
    """Instantaneous label of one skeleton; None where the geometry is ambiguous or unseen.

    NaN features (keypoints not seen) compare False everywhere and so vote for nothing.
    """
    torso, hip_z = features.torso_deg, features.hip_z
    if torso >= params.lying_min_deg and hip_z <= params.lying_max_hip_m:
        return LYING
    if not torso <= params.upright_max_deg:
        return None  # bending, crouching, or the torso was not seen
    if features.wrist_rise_m >= params.wave_above_shoulder_m:
        return WAVING
    if features.knee_deg <= params.sit_knee_max_deg or hip_z <= params.sit_max_hip_m:
        return SITTING
    if speed_mps >= params.walk_speed_mps:
        return WALKING
    return STANDING


@dataclass(slots=True)
class FallInfo:
    """A detected fall."""

    speed_mps: float  # fastest downward speed during the drop
    drop_m: float  # how far the head came down
    confidence: float
    severity: str  # "high" or "medium"


@dataclass(slots=True)
class ActivityState:
    """Per-track activity memory: current label, pending label, fall detector."""

    activity: str | None = None
    pending: str | None = None
    pending_since_s: float = 0.0
    fallen: bool = False
    drop_at_s: float | None = None  # last time the body was dropping fast
    drop_from_z: float = 0.0  # head height when the drop began
    drop_speed_mps: float = 0.0  # fastest downward speed seen in the drop
    head_z: float | None = None
    head_vz_mps: float = 0.0
    last_t_s: float | None = None

    def step(
        self,
        raw: str | None,
        hip_z: float,
        head_z: float,
        hip_vz_mps: float,
        mean_conf: float,
        now_s: float,
        params: ActivityParams,
    ) -> tuple[tuple[str | None, str] | None, FallInfo | None]:
        """Advance by one frame; returns (previous, new) on a change and a fall if one fired."""
        prev_head = self.head_z
        if not math.isnan(head_z):
            if prev_head is not None and self.last_t_s is not None and now_s > self.last_t_s:
                vz = (head_z - prev_head) / (now_s - self.last_t_s)
                self.head_vz_mps = 0.5 * vz + 0.5 * self.head_vz_mps
            self.head_z = head_z
        self.last_t_s = now_s
        descent = min(hip_vz_mps, self.head_vz_mps)
        if descent <= params.fall_velocity_mps:
            if self.drop_at_s is None:
                start = prev_head if prev_head is not None else self.head_z
                self.drop_from_z = start if start is not None else 0.0
                self.drop_speed_mps = 0.0
            self.drop_at_s = now_s
            self.drop_speed_mps = max(self.drop_speed_mps, -descent)
        elif self.drop_at_s is not None and now_s - self.drop_at_s > params.fall_window_s:
            self.drop_at_s = None

        fall: FallInfo | None = None
        if (
            not self.fallen
            and raw == LYING
            and self.drop_at_s is not None
            and self.head_z is not None
            and self.drop_from_z - self.head_z >= params.fall_min_drop_m
        ):
            fall = self._fall(mean_conf, params)
            previous = self.activity
            self.fallen = True
            self.activity = FALLEN
            self.pending = None
            self.drop_at_s = None
            return (previous, FALLEN), fall

        if self.fallen:
            got_up = raw in UPRIGHT or (raw == SITTING and hip_z >= params.get_up_hip_m)
            candidate: str | None = raw if got_up else FALLEN
        else:
            candidate = raw
        if self.activity is None:
            # the first label of a track is taken at once: there is nothing to flicker from
            self.activity = candidate
            return None, None
        if candidate is None or candidate == self.activity:
            self.pending = None
            return None, None
        if candidate != self.pending:
            self.pending = candidate
            self.pending_since_s = now_s
            return None, None
        if now_s - self.pending_since_s + 1e-9 < params.hold_s:
            return None, None
        previous = self.activity
        self.activity = candidate
        self.pending = None
        if candidate != FALLEN:
            self.fallen = False
        return (previous, candidate), None

    def _fall(self, mean_conf: float, params: ActivityParams) -> FallInfo:
        speed = self.drop_speed_mps
        drop = self.drop_from_z - (self.head_z or 0.0)
        excess = min(1.0, max(0.0, (speed + params.fall_velocity_mps) / 1.0))
        confidence = min(1.0, max(0.0, 0.5 + 0.3 * excess + 0.2 * mean_conf))
        severity = "high" if speed >= params.severe_speed_mps else "medium"
        return FallInfo(round(speed, 3), round(drop, 3), round(confidence, 3), severity)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready state."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ActivityState:
        """State written by ``to_dict``."""
        return cls(**data)
