"""Activities as joint-angle trajectories: walk, stand, sit, lie, fall, wave.

``Motion`` holds per-person parameters (arrays of length M); ``pose_at`` turns them into
``Pose`` arrays at times (M, T), vectorised over both. A fall is one motion: the person
walks or stands until ``t_fall_s``, goes down over ``fall_s`` seconds (the body pitches
like a toppling stick, knees buckle, arms reach out) and then lies sprawled on the floor.
Ground-truth labels come from the same parameters (``activity_at``, ``falling_during``).

Everyone breathes (0.2-0.33 Hz, chest wall 4-10 mm peak to peak, ``Pose.breath_m``); people
who stand still sway by about a centimetre, sitting ones by a third of that, lying ones
barely.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from invispose.sim.body import N_LIMBS, SHIN, THIGH, Pose

F32 = npt.NDArray[np.float32]
I8 = npt.NDArray[np.int8]
B = npt.NDArray[np.bool_]

# motion kinds; their labels index schemas.ACTIVITIES
WALK, STAND, SIT, LIE, FALL, WAVE = range(6)
KIND_NAMES = ("walk", "stand", "sit", "lie", "fall", "wave")
# schemas.ACTIVITIES = walking, standing, sitting, lying, fallen, waving
_LABEL = np.asarray([0, 1, 2, 3, 4, 5], dtype=np.int8)
LABEL_WALKING, LABEL_STANDING = 0, 1
WALKING_MIN_SPEED_MPS = 0.2
#: idle sway amplitude of the hip centre per kind (walk, stand, sit, lie, fall, wave), metres;
#: a fallen person sways as a lying one
SWAY_M = np.asarray([0.0, 0.012, 0.004, 0.0015, 0.012, 0.012], dtype=np.float32)
BREATH_HZ = (0.2, 0.33)  # resting breathing rate, 12-20 breaths per minute
BREATH_DEPTH_M = (0.004, 0.010)  # chest wall displacement, peak to peak


@dataclass(slots=True)
class Motion:
    """Motion parameters of M persons (every field has length M on its first axis)."""

    kind: I8  # (M,) WALK..WAVE
    height_m: F32  # (M,) stature
    start_xy: F32  # (M, 2) hip centre at t0_s
    t0_s: F32  # (M,) reference time of start_xy
    heading: F32  # (M,) radians from +x towards +y
    speed_mps: F32  # (M,) walking speed (walk, and before a fall)
    gait_phase: F32  # (M,) gait cycle phase at t0_s, radians
    t_fall_s: F32  # (M,) fall start (fall)
    fall_s: F32  # (M,) fall duration
    fall_dir: F32  # (M,) +1 falls forward (face down), -1 backward
    support_z: F32  # (M,) surface a lying person rests on (0 floor, ~0.45 bed)
    wave_side: F32  # (M,) +1 waves the right arm, -1 the left
    wave_hz: F32  # (M,) waving frequency
    sway_phase: F32  # (M, 2) idle sway phases
    limb_offset: F32  # (M, 8, 2) personal posture offsets added to every pose
    sprawl: F32  # (M, 8, 2) limb angles lying after a fall (or lying down)
    breath_hz: F32  # (M,) breathing rate
    breath_depth_m: F32  # (M,) chest wall displacement, peak to peak
    breath_phase: F32  # (M,) breathing phase at t = 0, radians

    def __len__(self) -> int:
        return int(self.kind.shape[0])

    def take(self, index: npt.ArrayLike) -> Motion:
        """The persons at ``index`` (an index array or boolean mask)."""
        idx = np.asarray(index)
        return Motion(**{name: getattr(self, name)[idx] for name in self.__slots__})


def random_motion(rng: np.random.Generator, kinds: npt.ArrayLike) -> Motion:
    """Persons of the given kinds with random body sizes and motion parameters.

    Positions are at the origin and times relative to 0: callers place them.
    """
    kind = np.asarray(kinds, dtype=np.int8).reshape(-1)
    m = kind.shape[0]

    def u(lo: float, hi: float, *shape: int) -> F32:
        return rng.uniform(lo, hi, (m, *shape)).astype(np.float32)

    # lying limbs stay in the floor's plane: flexion near 0 (by the sides) or pi (arms
    # above the head), spread by abduction
    overhead = (rng.random((m, 2)) < 0.35) * np.pi  # (M, 2) per arm
    arm_flex = overhead + rng.uniform(-0.2, 0.2, (m, 2))
    fore_flex = arm_flex + rng.uniform(-0.4, 0.4, (m, 2))
    leg_flex = rng.uniform(-0.15, 0.1, (m, 4))
    flex = np.concatenate((arm_flex, fore_flex, leg_flex), axis=1)  # (M, 8)
    abd = np.concatenate((u(0.1, 1.3, 4), u(0.02, 0.45, 4)), axis=1)  # (M, 8)
    sprawl = np.stack((flex, abd), axis=-1)  # (M, 8, 2)
    speed = np.where(kind == WALK, u(0.5, 1.6), 0.0).astype(np.float32)
    pre_fall_walks = (kind == FALL) & (rng.random(m) < 0.5)
    speed = np.where(pre_fall_walks, u(0.4, 1.2), speed).astype(np.float32)
    return Motion(
        kind=kind,
        height_m=np.clip(rng.normal(1.70, 0.09, m), 1.50, 1.95).astype(np.float32),
        start_xy=np.zeros((m, 2), dtype=np.float32),
        t0_s=np.zeros(m, dtype=np.float32),
        heading=u(-np.pi, np.pi),
        speed_mps=speed,
        gait_phase=u(0.0, 2 * np.pi),
        t_fall_s=np.zeros(m, dtype=np.float32),
        fall_s=u(0.5, 1.1),
        fall_dir=np.where(rng.random(m) < 0.65, 1.0, -1.0).astype(np.float32),
        support_z=np.where(rng.random(m) < 0.5, u(0.4, 0.6), 0.0).astype(np.float32),
        wave_side=np.where(rng.random(m) < 0.7, 1.0, -1.0).astype(np.float32),
        wave_hz=u(1.0, 2.2),
        sway_phase=u(0.0, 2 * np.pi, 2),
        limb_offset=u(-0.08, 0.08, N_LIMBS, 2),
        sprawl=sprawl.astype(np.float32),
        breath_hz=u(*BREATH_HZ),
        breath_depth_m=u(*BREATH_DEPTH_M),
        breath_phase=u(0.0, 2 * np.pi),
    )


def _standing_limbs(shape: tuple[int, ...]) -> F32:
    """Relaxed upright limbs (..., 8, 2): arms hanging slightly out, legs straight."""
    limbs = np.zeros((*shape, N_LIMBS, 2), dtype=np.float32)
    limbs[..., 0:2, :] = (0.05, 0.10)
    limbs[..., 2:4, :] = (0.20, 0.08)
    limbs[..., 4:6, :] = (0.02, 0.03)
    limbs[..., 6:8, :] = (-0.02, 0.03)
    return limbs


def _gait_limbs(phase: F32, speed: F32) -> F32:
    """Walking limb angles (..., 8, 2) at gait phase (...) and speed (...)."""
    amp = 0.33 * np.clip(speed / 1.2, 0.0, 1.3)  # hip swing amplitude, radians
    limbs = _standing_limbs(phase.shape)
    for side, ph in ((0, phase), (1, phase + np.pi)):
        thigh = amp * np.sin(ph)
        swing = np.maximum(0.0, np.cos(ph)) ** 2  # knee bends while the leg swings forward
        bend = 0.08 + 1.0 * swing * np.clip(speed / 1.2, 0.3, 1.2)
        limbs[..., 4 + side, 0] = thigh
        limbs[..., 6 + side, 0] = thigh - bend
        arm = -0.7 * thigh  # arms swing against the leg of their side
        limbs[..., side, 0] = arm
        limbs[..., 2 + side, 0] = arm + 0.25 + 0.15 * np.sin(ph)
    return limbs


def _fall_progress(m: Motion, t: F32) -> F32:
    """0 before the fall, 1 once down: accelerating like a toppling body."""
    s = np.clip((t - m.t_fall_s[:, None]) / m.fall_s[:, None], 0.0, 1.0)
    out: F32 = (s * s).astype(np.float32)
    return out


def pose_at(m: Motion, t_s: npt.ArrayLike) -> Pose:
    """Poses of the M persons at times (M, T) (or (T,) shared): ``Pose`` arrays (M, T).

    Each activity's angles are computed only for the persons doing it.
    """
    t = np.ascontiguousarray(
        np.broadcast_to(np.asarray(t_s, dtype=np.float32), (len(m), np.shape(t_s)[-1]))
    )
    n_m, n_t = t.shape
    kind = m.kind
    fwd = np.stack((np.cos(m.heading), np.sin(m.heading)), axis=-1)[:, None, :]  # (M, 1, 2)
    limbs = _standing_limbs((n_m, n_t))  # (M, T, 8, 2)
    trunk = np.zeros((n_m, n_t), dtype=np.float32)
    pitch = np.zeros((n_m, n_t), dtype=np.float32)
    support = np.zeros((n_m, n_t), dtype=np.float32)
    rest = np.ones((n_m, n_t), dtype=np.float32)  # posture offsets shrink for bodies at rest
    # position: walkers move in a straight line (fallers until they fall); others sway
    moving_until = np.where(kind == FALL, m.t_fall_s, np.inf)[:, None]
    moving_t = np.minimum(t, moving_until) - m.t0_s[:, None]  # (M, T)
    root = m.start_xy[:, None, :] + fwd * (m.speed_mps[:, None] * moving_t)[..., None]
    fall_s = np.zeros((n_m, n_t), dtype=np.float32)
    falls = np.flatnonzero(kind == FALL)
    if falls.size:
        fall_s[falls] = _fall_progress(m.take(falls), t[falls])
    still = np.flatnonzero((kind != WALK) & (m.speed_mps == 0))
    if still.size:
        ts, ph = t[still], m.sway_phase[still]
        sway = SWAY_M[kind[still].astype(np.intp), None] * np.ones_like(ts)  # (k, T)
        sway += fall_s[still] * (SWAY_M[LIE] - sway)  # down after a fall: sways as lying
        root[still, :, 0] += sway * np.sin(2 * np.pi * 0.23 * ts + ph[:, 0:1])
        root[still, :, 1] += sway * np.sin(2 * np.pi * 0.31 * ts + ph[:, 1:2])
    cycle = np.cos(2 * np.pi * m.breath_hz[:, None] * t + m.breath_phase[:, None])  # (M, T)
    breath = (0.5 * m.breath_depth_m[:, None] * (1.0 - cycle)).astype(np.float32)
    gait_rows = np.flatnonzero((m.speed_mps > 0) & ((kind == WALK) | (kind == FALL)))
    if gait_rows.size:
        dt = t[gait_rows] - m.t0_s[gait_rows, None]
        speed = m.speed_mps[gait_rows, None]
        phase = m.gait_phase[gait_rows, None] + 2 * np.pi * (0.55 + 0.35 * speed) * dt
        walking = fall_s[gait_rows] == 0  # fallers walk until they fall
        gait = _gait_limbs(phase.astype(np.float32), np.broadcast_to(speed, dt.shape))
        limbs[gait_rows] = np.where(walking[..., None, None], gait, limbs[gait_rows])
        trunk[gait_rows] = np.where(walking, 0.06, 0.0)

    rows = np.flatnonzero(kind == SIT)
    if rows.size:
        limbs[rows, :, 4:6, 0] = 1.5
        limbs[rows, :, 6:8, 0] = 0.1
        limbs[rows, :, 0:2, 0] = 0.25
        limbs[rows, :, 2:4, 0] = 1.1
        trunk[rows] = -0.08

    rows = np.flatnonzero(kind == LIE)
    if rows.size:
        pitch[rows] = -np.pi / 2
        support[rows] = m.support_z[rows, None]
        limbs[rows] = (0.3 * m.sprawl[rows] + 0.7 * _standing_limbs((rows.size,)))[:, None]
        rest[rows] = 0.3

    rows = np.flatnonzero(kind == WAVE)
    if rows.size:
        arm = (m.wave_side[rows] > 0).astype(np.intp)  # limb index of the waving arm
        swing = 2.75 + 0.35 * np.sin(
            2 * np.pi * m.wave_hz[rows, None] * t[rows] + m.gait_phase[rows, None]
        )  # (k, T)
        r = np.arange(rows.size)
        sub = limbs[rows]
        sub[r, :, arm, 0], sub[r, :, arm, 1] = 0.2, 1.9
        sub[r, :, 2 + arm, 0] = 0.0
        sub[r, :, 2 + arm, 1] = swing
        limbs[rows] = sub

    # falling: pitch over, buckle the knees, reach out, end sprawled on the floor
    if falls.size:
        f = fall_s[falls]  # (k, T)
        direction = m.fall_dir[falls, None]  # (k, 1)
        down = f[..., None, None]
        mid = np.sin(np.pi * np.sqrt(f))  # peaks half-way down
        reach = _standing_limbs((falls.size, n_t))
        reach[..., 0:2, 0] = 1.2 * direction[..., None]
        reach[..., 2:4, 0] = 1.3 * direction[..., None]
        reach[..., 0:2, 1] = 0.4
        base = limbs[falls]
        fall_limbs = (1 - down) * base + down * m.sprawl[falls, None]
        fall_limbs += (mid[..., None, None] * 0.6) * (reach - fall_limbs)
        fall_limbs[..., 6:8, 0] -= 0.9 * mid[..., None]  # knees buckle
        limbs[falls] = np.where(down > 0, fall_limbs, base)
        fall_pitch = direction * (np.pi / 2) * f
        pitch[falls] = fall_pitch
        topple = (THIGH + SHIN) * m.height_m[falls, None] * np.sin(np.abs(fall_pitch)) * 0.55
        root[falls] += fwd[falls] * (direction * topple)[..., None]
        rest[falls] = np.where(f >= 1, 0.3, 1.0)

    limbs += rest[..., None, None] * m.limb_offset[:, None]
    return Pose(
        root_xy=root.astype(np.float32, copy=False),
        heading=np.repeat(m.heading[:, None], n_t, axis=1).astype(np.float32, copy=False),
        pitch=pitch,
        trunk_pitch=trunk,
        limbs=limbs.astype(np.float32, copy=False),
        support_z=support,
        breath_m=breath,
    )


def activity_at(m: Motion, t_s: npt.ArrayLike) -> I8:
    """Activity label index (into schemas.ACTIVITIES) of each person at a time: int8 (M,)."""
    t = np.broadcast_to(np.asarray(t_s, dtype=np.float32), (len(m),))  # (M,)
    label = _LABEL[m.kind.astype(np.intp)]  # (M,)
    before = np.where(m.speed_mps > WALKING_MIN_SPEED_MPS, LABEL_WALKING, LABEL_STANDING)
    out: I8 = np.where((m.kind == FALL) & (t < m.t_fall_s), before, label).astype(np.int8)
    return out


def falling_during(m: Motion, t0_s: npt.ArrayLike, t1_s: npt.ArrayLike) -> B:
    """Whether each person's fall (start to lying) overlaps [t0, t1]: bool (M,)."""
    t0 = np.asarray(t0_s, dtype=np.float32)
    t1 = np.asarray(t1_s, dtype=np.float32)
    overlap = (m.t_fall_s <= t1) & (m.t_fall_s + m.fall_s >= t0)
    out: B = (m.kind == FALL) & overlap
    return out
