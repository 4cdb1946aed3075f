"""Articulated bodies: joint angles to COCO-17 keypoints, and body parts as radar scatterers.

Body frame: x to the person's right, y forward, z up, origin at the hip centre. Every limb
segment is a unit direction in the frame of its parent (trunk for arms, pelvis for legs)
given by a flexion angle (forward swing) and an abduction angle (sideways), so segment
lengths are exact by construction whatever the angles. The whole body then pitches
about its right axis (lying, falling), turns to its heading, and is lowered until the
lower ankle rests on the support surface and nothing goes through it.

Proportions follow Drillis & Contini (segment lengths as fractions of stature).
All functions broadcast over any leading dimensions (persons, time).

Breathing moves the chest wall forward (``Pose.breath_m``); the skeleton shows it as the
shoulders and arms moving with it by the same few millimetres, and ``body_parts`` reads it
back from them (the head stays on the trunk's rigid axis) to move the front of the torso.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]

N_LIMBS = 8  # upper arm L/R, forearm L/R, thigh L/R, shin L/R
LIMB_NAMES = ("l_upper_arm", "r_upper_arm", "l_forearm", "r_forearm", "l_thigh", "r_thigh",
              "l_shin", "r_shin")
_SIDE = np.asarray([-1.0, 1.0] * 4, dtype=np.float32)  # (8,) x sign: left is -x

# segment lengths as fractions of stature
HIP_WIDTH = 0.11
SHOULDER_WIDTH = 0.22
TRUNK = 0.288  # hip centre to shoulder line
NECK_HEAD = 0.105  # shoulder line to head centre
UPPER_ARM = 0.186
FOREARM = 0.146
THIGH = 0.245
SHIN = 0.246
ANKLE_HEIGHT = 0.039
# face points relative to the head centre (fractions of stature), body-frame axes
_FACE = np.asarray(
    [
        [0.0, 0.052, -0.006],  # nose
        [-0.019, 0.044, 0.012],  # left eye
        [0.019, 0.044, 0.012],  # right eye
        [-0.044, 0.0, 0.0],  # left ear
        [0.044, 0.0, 0.0],  # right ear
    ],
    dtype=np.float32,
)
CLEARANCE = 0.035  # fraction of stature kept between any keypoint and the support surface

#: COCO bones whose lengths the skeleton keeps fixed (pairs of keypoint indices)
BONES: tuple[tuple[int, int], ...] = (
    (5, 7), (7, 9), (6, 8), (8, 10), (11, 13), (13, 15), (12, 14), (14, 16),
    (5, 6), (11, 12), (1, 2), (3, 4), (0, 3),
)


@dataclass(slots=True)
class Pose:
    """Joint angles and placement of bodies, arrays broadcast over leading dims (...)."""

    root_xy: F32  # (..., 2) hip centre on the floor plan, metres
    heading: F32  # (...,) direction faced, radians from +x towards +y
    pitch: F32  # (...,) whole-body forward tilt about the right axis, radians
    trunk_pitch: F32  # (...,) upper body forward bend relative to the pelvis
    limbs: F32  # (..., 8, 2) (flexion, abduction) per limb, radians
    support_z: F32  # (...,) height of the surface the body rests on (floor 0, bed, chair)
    breath_m: F32 | None = None  # (...,) chest wall forward of its rest position (None: 0)

    @staticmethod
    def blend(a: Pose, b: Pose, w: npt.ArrayLike) -> Pose:
        """Interpolate poses (weight ``w`` (...,) on ``b``); headings take the short way."""
        wt = np.asarray(w, dtype=np.float32)
        dh = np.angle(np.exp(1j * (b.heading - a.heading))).astype(np.float32)
        return Pose(
            root_xy=a.root_xy + wt[..., None] * (b.root_xy - a.root_xy),
            heading=a.heading + wt * dh,
            pitch=a.pitch + wt * (b.pitch - a.pitch),
            trunk_pitch=a.trunk_pitch + wt * (b.trunk_pitch - a.trunk_pitch),
            limbs=a.limbs + wt[..., None, None] * (b.limbs - a.limbs),
            support_z=a.support_z + wt * (b.support_z - a.support_z),
            breath_m=_blend_optional(a.breath_m, b.breath_m, wt),
        )


def _blend_optional(a: F32 | None, b: F32 | None, w: F32) -> F32 | None:
    """Blend of two optional arrays (None counts as zeros)."""
    if a is None and b is None:
        return None
    a0 = np.zeros_like(b) if a is None else a
    b0 = np.zeros_like(a0) if b is None else b
    out: F32 = (a0 + w * (b0 - a0)).astype(np.float32)
    return out


# body-frame templates in units of stature: face (5), shoulders (2), hips (2)
_UPPER = np.concatenate(
    (_FACE + np.asarray([0.0, 0.0, TRUNK + NECK_HEAD], dtype=np.float32),
     np.asarray([[-SHOULDER_WIDTH / 2, 0.0, TRUNK], [SHOULDER_WIDTH / 2, 0.0, TRUNK]],
                dtype=np.float32)),
)  # (7, 3)
_HIPS = np.asarray([[-HIP_WIDTH / 2, 0.0, 0.0], [HIP_WIDTH / 2, 0.0, 0.0]], dtype=np.float32)
_LIMB_LENGTH = np.asarray(
    [UPPER_ARM, UPPER_ARM, FOREARM, FOREARM, THIGH, THIGH, SHIN, SHIN], dtype=np.float32
)


def _pitch_in_place(v: F32, angle: F32) -> None:
    """Rotate keypoint-major vectors (K, 3, ...) forward about +x: up tilts to +y."""
    c, s = np.cos(angle), np.sin(angle)  # (...,)
    y = v[:, 1].copy()
    z = v[:, 2]
    v[:, 1] = y * c + z * s
    v[:, 2] = z * c - y * s


def keypoints_major(pose: Pose, height_m: npt.ArrayLike) -> F32:
    """COCO-17 keypoints in room coordinates, keypoint-major: float32 (17, 3, ...).

    The layout keeps every step a contiguous vector operation over all bodies and
    times, which is what makes bulk simulation fast.
    """
    shape = pose.heading.shape
    h = np.broadcast_to(np.asarray(height_m, dtype=np.float32), shape)  # (...)
    flex = np.moveaxis(pose.limbs[..., 0], -1, 0)  # (8, ...)
    abd = np.moveaxis(pose.limbs[..., 1], -1, 0)
    ca = np.cos(abd)
    length = _LIMB_LENGTH.reshape(8, *([1] * len(shape))) * h  # (8, ...) metres
    seg = np.empty((8, 3, *shape), dtype=np.float32)
    seg[:, 0] = _SIDE.reshape(8, *([1] * len(shape))) * np.sin(abd) * length
    seg[:, 1] = ca * np.sin(flex) * length
    seg[:, 2] = -ca * np.cos(flex) * length
    kp = np.empty((17, 3, *shape), dtype=np.float32)
    kp[:7] = _UPPER.reshape(7, 3, *([1] * len(shape))) * h  # face, shoulders
    kp[7:9] = kp[5:7] + seg[0:2]  # elbows
    kp[9:11] = kp[7:9] + seg[2:4]  # wrists
    if pose.breath_m is not None:  # the chest wall carries shoulders and arms forward
        kp[5:11, 1] += pose.breath_m
    _pitch_in_place(kp[:11], pose.trunk_pitch)  # the upper body bends at the hips
    kp[11:13] = _HIPS.reshape(2, 3, *([1] * len(shape))) * h
    kp[13:15] = kp[11:13] + seg[4:6]  # knees
    kp[15:17] = kp[13:15] + seg[6:8]  # ankles
    _pitch_in_place(kp, pose.pitch)
    # rest on the support: lower ankle at ankle height, nothing below the clearance
    ankle_z = np.minimum(kp[15, 2], kp[16, 2])  # (...)
    lowest = kp[:, 2].min(axis=0)
    hip_z = pose.support_z + np.maximum(ANKLE_HEIGHT * h - ankle_z, CLEARANCE * h - lowest)
    # turn to the heading: forward = (cos, sin), right = (sin, -cos)
    c, s = np.cos(pose.heading), np.sin(pose.heading)
    x = kp[:, 0].copy()
    y = kp[:, 1].copy()
    kp[:, 0] = x * s + y * c + pose.root_xy[..., 0]
    kp[:, 1] = y * s - x * c + pose.root_xy[..., 1]
    kp[:, 2] += hip_z
    return kp


def keypoints(pose: Pose, height_m: npt.ArrayLike) -> F32:
    """COCO-17 keypoints (..., 17, 3) in room coordinates."""
    kp = keypoints_major(pose, height_m)  # (17, 3, ...)
    return np.ascontiguousarray(np.moveaxis(kp, (0, 1), (-2, -1)))


# --- body parts as scatterers ---------------------------------------------------------

#: (keypoint indices averaged for end a, for end b, radius as fraction of stature) of the
#: parts other than the torso
PARTS: tuple[tuple[tuple[int, ...], tuple[int, ...], float], ...] = (
    ((3, 4), (3, 4), 0.058),  # head: a sphere at the ears' midpoint
    ((5,), (7,), 0.026),
    ((6,), (8,), 0.026),
    ((7,), (9,), 0.021),
    ((8,), (10,), 0.021),
    ((11,), (13,), 0.040),
    ((12,), (14,), 0.040),
    ((13,), (15,), 0.028),
    ((14,), (16,), 0.028),
)
TORSO_RADIUS = 0.075  # of stature
#: the torso returns from a few points on its surface rather than one: (right, forward)
#: in torso radii, up in torso half-lengths, and how much of the breathing each point
#: follows. Their path lengths differ by tens of centimetres and change differently as the
#: body moves, turns and breathes, so their sum fades in and out (speckle).
TORSO_POINTS: tuple[tuple[float, float, float, float], ...] = (
    (0.0, 0.85, 0.35, 1.0),  # chest
    (-0.75, -0.45, -0.25, 0.3),  # left flank and back
    (0.75, -0.45, -0.25, 0.3),  # right flank and back
)
N_TORSO = len(TORSO_POINTS)
TORSO_PART = 1  # index of the chest point: the torso's representative for wall bounces
N_PARTS = len(PARTS) + N_TORSO  # head, torso points, then the limbs
_ORDER = (0, *range(1 + N_TORSO, N_PARTS))  # slots of PARTS' entries among all parts
#: each torso point is a spheroid 1/sqrt(N_TORSO) the torso's size: 1/N_TORSO of its RCS
_TORSO_SCALE = float(1.0 / np.sqrt(N_TORSO))
PART_RADIUS = np.asarray(
    [PARTS[0][2], *[TORSO_RADIUS * _TORSO_SCALE] * N_TORSO, *[p[2] for p in PARTS[1:]]],
    dtype=np.float32,
)  # (N_PARTS,)
_TP = np.asarray(TORSO_POINTS, dtype=np.float32)  # (N_TORSO, 4)
#: points along the body axis, feet to head (pairs of keypoints averaged), for shadowing
AXIS_POINTS: tuple[tuple[int, int], ...] = ((15, 16), (13, 14), (11, 12), (5, 6), (3, 4))


def _unit0(v: F32) -> F32:
    """Coordinate-major vectors (3, ...) scaled to unit length."""
    out: F32 = v / np.maximum(np.sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2]), 1e-6)
    return out


def _torso(kp: F32, h: F32, centre: F32, unit: F32, half: F32) -> None:
    """Fill the torso points' slots of ``centre``, ``unit`` (B, 3, ...), ``half`` (B, ...)."""
    hip = 0.5 * (kp[11] + kp[12])  # (3, ...)
    up = _unit0(0.5 * (kp[3] + kp[4]) - hip)  # the head stays on the trunk's rigid axis
    right = _unit0(kp[12] - kp[11])
    forward = np.stack((up[1] * right[2] - up[2] * right[1],
                        up[2] * right[0] - up[0] * right[2],
                        up[0] * right[1] - up[1] * right[0]))  # up × right
    rel = 0.5 * (kp[5] + kp[6]) - hip  # hip centre to shoulder line
    breath = (rel * forward).sum(axis=0)  # (...) chest wall forward of rest
    length = (rel * up).sum(axis=0)  # (...) along the trunk's axis
    r = TORSO_RADIUS * h  # (...)
    # each point = centre at rest + (side, ahead, high, follow) @ these four vectors
    basis = np.stack((right * r, forward * r, up * (0.5 * length), forward * breath))
    points = np.einsum("kb,b...->k...", _TP, basis)  # (N_TORSO, 3, ...) no threaded BLAS
    points += hip + (0.5 * length) * up
    end = TORSO_PART + N_TORSO
    centre[TORSO_PART:end] = points
    unit[TORSO_PART:end] = up
    half[TORSO_PART:end] = np.maximum(0.5 * length, r) * _TORSO_SCALE


def body_parts(kp: F32, height_m: npt.ArrayLike) -> tuple[F32, F32, F32, F32, F32]:
    """Scatterers of keypoint-major keypoints (17, 3, ...).

    Returns part centres (B, 3, ...), unit axes (B, 3, ...), radius (B, ...) and
    half-length (B, ...) of each part's spheroid, and the body-axis points (K, 3, ...).
    B = N_PARTS: the head, the ``N_TORSO`` torso points, the eight limb segments.
    """
    shape = kp.shape[2:]
    h = np.broadcast_to(np.asarray(height_m, dtype=np.float32), shape)
    centre = np.zeros((N_PARTS, 3, *shape), dtype=np.float32)  # torso slots: see _torso
    seg = np.zeros_like(centre)
    for i, (end_a, end_b, _) in zip(_ORDER, PARTS, strict=True):  # contiguous vector ops
        a = kp[end_a[0]] if len(end_a) == 1 else 0.5 * (kp[end_a[0]] + kp[end_a[1]])
        b = kp[end_b[0]] if len(end_b) == 1 else 0.5 * (kp[end_b[0]] + kp[end_b[1]])
        np.subtract(b, a, out=seg[i])
        np.add(a, b, out=centre[i])
    centre *= np.float32(0.5)
    points = np.stack([kp[i] + kp[j] for i, j in AXIS_POINTS]) * np.float32(0.5)  # (K, 3, ...)
    length = np.sqrt(seg[:, 0] ** 2 + seg[:, 1] ** 2 + seg[:, 2] ** 2)  # (B, ...)
    radius = PART_RADIUS.reshape(-1, *([1] * len(shape))) * h  # (B, ...)
    half = np.maximum(np.float32(0.5) * length, radius)  # the head: half-length = radius
    unit = seg / np.maximum(length, np.float32(1e-6))[:, None]
    _torso(kp, h, centre, unit, half)
    return centre, unit, radius.astype(np.float32), half, points
