"""People over long times: scripted or random sequences of activities, queryable at any time.

A ``PersonScript`` is a list of segments (walk to a point, stand, sit, lie, wave, fall),
each a one-person ``Motion`` starting where the previous segment ended. Poses are
evaluated per segment and blended into the next over ``BLEND_S`` (getting up after a fall
takes ``GET_UP_S``), blending joint angles, never keypoints, so bones keep their lengths.
A random script extends itself deterministically (from its own seed) as time advances.
Queries are pure functions of time: any order, any resolution, same answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from invispose.errors import SimulationError
from invispose.sim.body import Pose
from invispose.sim.motion import (
    FALL,
    KIND_NAMES,
    LIE,
    STAND,
    WALK,
    WAVE,
    Motion,
    pose_at,
    random_motion,
)

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]

BLEND_S = 0.6
GET_UP_S = 1.5
FALL_BLEND_S = 0.25  # a fall starts from whatever pose the person was in
FIRST_FALL_S = 20.0  # random people do not fall in their first seconds
ROOM_MARGIN_M = 0.5
KIND_BY_NAME = {name: i for i, name in enumerate(KIND_NAMES)}
# schemas.ACTIVITIES labels of the kinds (a fall segment is "fallen" from its start)
_LABELS = ("walking", "standing", "sitting", "lying", "fallen", "waving")
# random scripts: next activity and its duration range (s); falls only from upright
RANDOM_NEXT = (("walk", 0.42), ("stand", 0.18), ("sit", 0.17), ("wave", 0.08), ("lie", 0.05),
               ("fall", 0.10))
RANDOM_DURATION_S = {"stand": (2.0, 8.0), "sit": (5.0, 25.0), "wave": (2.0, 5.0),
                     "lie": (6.0, 20.0), "fall": (6.0, 15.0)}


@dataclass(slots=True)
class Segment:
    """One activity of one person from t0_s to t1_s."""

    kind: int
    t0_s: float
    t1_s: float
    motion: Motion  # one person


@dataclass
class PersonScript:
    """A person's activities over time: fixed segments, optionally extended at random."""

    person_id: str
    height_m: float
    room_size_m: F64  # (3,)
    segments: list[Segment] = field(default_factory=list)
    random_seed: int | None = None  # extend with random activities past the last segment
    fall_probability: float = 0.03
    _rng: np.random.Generator | None = None
    _traits: Motion | None = None

    def __post_init__(self) -> None:
        seed = 0 if self.random_seed is None else self.random_seed
        self._rng = np.random.default_rng([seed, 7])
        self._traits = random_motion(self._rng, [STAND])
        self._traits.height_m[:] = self.height_m

    # --- building ------------------------------------------------------------------

    def _end_state(self) -> tuple[F32, float, float]:
        """(hip xy, heading, time) where the script currently ends."""
        if not self.segments:
            raise SimulationError(f"person {self.person_id}: script has no start")
        last = self.segments[-1]
        pose = pose_at(last.motion, np.asarray([[last.t1_s]], dtype=np.float32))
        return pose.root_xy[0, 0].copy(), float(pose.heading[0, 0]), last.t1_s

    def start(self, xy_m: npt.ArrayLike, heading: float = 0.0, t_s: float = 0.0) -> None:
        """Place the person, standing, at the script's start (a zero-length segment)."""
        self._add(STAND, np.asarray(xy_m, dtype=np.float32), heading, t_s, t_s)

    def _add(self, kind: int, xy: F32, heading: float, t0: float, t1: float,
             **params: float) -> None:
        assert self._rng is not None and self._traits is not None
        m = random_motion(self._rng, [kind])
        m.height_m[:] = self.height_m
        m.limb_offset[:] = self._traits.limb_offset
        m.start_xy[0] = xy
        m.heading[0] = heading
        m.t0_s[0] = t0
        m.t_fall_s[0] = t0
        if kind != WALK:
            m.speed_mps[0] = 0.0
        for name, value in params.items():
            getattr(m, name)[0] = value
        self.segments.append(Segment(kind, t0, t1, m))

    def add(self, activity: str, *, duration_s: float | None = None,
            to_m: npt.ArrayLike | None = None, speed_mps: float = 1.0,
            support_z_m: float | None = None) -> None:
        """Append an activity where the script ends (walks go to ``to_m`` at ``speed_mps``)."""
        if activity not in KIND_BY_NAME:
            raise SimulationError(f"unknown activity {activity!r} (known: {', '.join(KIND_NAMES)})")
        kind = KIND_BY_NAME[activity]
        xy, heading, t0 = self._end_state()
        if kind == WALK:
            if to_m is None:
                raise SimulationError(f"person {self.person_id}: a walk needs to_m")
            target = self._inside(np.asarray(to_m, dtype=np.float32)[:2])
            step = target - xy
            dist = float(np.hypot(*step))
            if dist < 1e-3 or speed_mps <= 0:
                raise SimulationError(f"person {self.person_id}: walk to where they stand")
            t1 = t0 + dist / speed_mps
            self._add(WALK, xy, float(np.arctan2(step[1], step[0])), t0, t1,
                      speed_mps=speed_mps)
            return
        if duration_s is None or duration_s <= 0:
            raise SimulationError(f"person {self.person_id}: {activity} needs duration_s > 0")
        params = {} if support_z_m is None else {"support_z": support_z_m}
        if kind == LIE and support_z_m is None:
            params["support_z"] = 0.0
        if kind == FALL:
            heading = self._lying_heading(xy, heading, 1.0)
            params["fall_dir"] = 1.0
        elif kind == LIE:
            heading = self._lying_heading(xy, heading, -1.0)
        self._add(kind, xy, heading, t0, t0 + duration_s, **params)

    def _lying_heading(self, xy: F32, heading: float, towards: float) -> float:
        """A heading (tried: ahead, behind, sideways…) that leaves a lying body in the room.

        ``towards`` +1: a forward fall (feet stay, the head and outstretched arms land
        up to one stature ahead); -1: lying down (head half a stature behind the hips,
        feet ahead).
        """
        ahead, behind = (1.0, 0.1) if towards > 0 else (0.55, 0.6)
        ahead, behind = ahead * self.height_m, behind * self.height_m
        lo, hi = 0.1, self.room_size_m[:2] - 0.1
        best, best_room = heading, -np.inf
        for turn in np.linspace(0.0, 2 * np.pi, 12, endpoint=False):
            h = heading + float(turn)
            fwd = np.asarray([np.cos(h), np.sin(h)])
            ends = np.stack((xy + ahead * fwd, xy - behind * fwd))  # (2, 2)
            room = float(np.min(np.concatenate(((ends - lo).ravel(), (hi - ends).ravel()))))
            if room >= 0:
                return h
            if room > best_room:
                best, best_room = h, room
        return best

    def _inside(self, xy: F32) -> F32:
        lo = ROOM_MARGIN_M
        hi = self.room_size_m[:2] - ROOM_MARGIN_M
        return np.clip(xy, lo, np.maximum(hi, lo)).astype(np.float32)

    def _extend_random(self, until_s: float) -> None:
        """Append random activities until the script covers ``until_s``."""
        assert self._rng is not None
        rng = self._rng
        names = [name for name, _ in RANDOM_NEXT]
        p = np.asarray([w for _, w in RANDOM_NEXT])
        p[-1] = self.fall_probability
        p /= p.sum()
        while self.segments[-1].t1_s < until_s:
            last = self.segments[-1].kind
            name = str(rng.choice(names, p=p))
            t_end = self.segments[-1].t1_s
            if name == "fall" and (last not in (STAND, WALK, WAVE) or t_end < FIRST_FALL_S):
                name = "stand"
            if last == FALL:
                name = "stand"  # get up after a fall
            if name == "walk":
                xy, _, _ = self._end_state()
                hi = np.maximum(self.room_size_m[:2] - ROOM_MARGIN_M, ROOM_MARGIN_M + 0.1)
                target = rng.uniform(ROOM_MARGIN_M, hi)
                if float(np.hypot(*(target - xy))) < 0.5:
                    continue
                self.add("walk", to_m=target, speed_mps=float(rng.uniform(0.6, 1.4)))
            else:
                shortest, longest = RANDOM_DURATION_S.get(name, (2.0, 8.0))
                support = float(rng.choice([0.0, 0.45])) if name == "lie" else None
                self.add(name, duration_s=float(rng.uniform(shortest, longest)),
                         support_z_m=support)

    def covered(self, until_s: float) -> None:
        """Make sure segments reach ``until_s`` (random scripts grow; fixed ones hold)."""
        if self.random_seed is not None:
            self._extend_random(until_s)

    # --- queries -------------------------------------------------------------------

    def _segment_index(self, t: F64) -> npt.NDArray[np.intp]:
        starts = np.asarray([s.t0_s for s in self.segments])
        return np.clip(np.searchsorted(starts, t, side="right") - 1, 0, len(self.segments) - 1)

    def pose(self, t_s: npt.ArrayLike) -> tuple[Pose, F32]:
        """Pose at times (T,) (arrays (1, T)) and the person's height."""
        t = np.atleast_1d(np.asarray(t_s, dtype=np.float64))
        self.covered(float(t.max()))
        index = self._segment_index(t)
        out = _empty(len(t))
        for i in np.unique(index).tolist():
            seg = self.segments[i]
            sel = np.flatnonzero(index == i)
            ts = t[sel].astype(np.float32)[None]  # (1, k)
            if i == len(self.segments) - 1 and self.random_seed is None:
                ts = np.minimum(ts, np.float32(seg.t1_s))  # a fixed script holds its end
            part = pose_at(seg.motion, ts)
            if i > 0:
                prev = self.segments[i - 1]
                blend = GET_UP_S if prev.kind == FALL else BLEND_S
                blend = FALL_BLEND_S if seg.kind == FALL else blend
                before = pose_at(prev.motion, np.full_like(ts, prev.t1_s))
                w = np.clip((ts - seg.t0_s) / blend, 0.0, 1.0)
                part = Pose.blend(before, part, w * w * (3 - 2 * w))  # smoothstep
            _merge(out, part, sel)
        return out, np.full((1,), self.height_m, dtype=np.float32)

    def activity(self, t_s: float) -> str:
        """Activity label (schemas.ACTIVITIES) at a time."""
        self.covered(t_s)
        seg = self.segments[int(self._segment_index(np.asarray([t_s]))[0])]
        return _LABELS[seg.kind]

    def fall_times(self, until_s: float) -> list[float]:
        """Start times of the falls up to ``until_s``."""
        self.covered(until_s)
        return [s.t0_s for s in self.segments if s.kind == FALL and s.t0_s <= until_s]

    def falling(self, t_s: float) -> bool:
        """Whether the person is going down at ``t_s`` (from a fall's start until lying)."""
        self.covered(t_s)
        seg = self.segments[int(self._segment_index(np.asarray([t_s]))[0])]
        return seg.kind == FALL and seg.t0_s <= t_s <= seg.t0_s + float(seg.motion.fall_s[0])


def _empty(n: int) -> Pose:
    z = np.zeros((1, n), dtype=np.float32)
    return Pose(np.zeros((1, n, 2), np.float32), z.copy(), z.copy(), z.copy(),
                np.zeros((1, n, 8, 2), np.float32), z.copy(), z.copy())


def _merge(dst: Pose, src: Pose, sel: npt.NDArray[np.intp]) -> None:
    """Write ``src`` (1, len(sel)) into columns ``sel`` of ``dst`` (1, n)."""
    for name in Pose.__slots__:
        value = getattr(src, name)
        if value is not None:
            getattr(dst, name)[:, sel] = value


def random_person(person_id: str, room_size_m: npt.ArrayLike, seed: int,
                  fall_probability: float = 0.03) -> PersonScript:
    """A person who wanders the room doing random activities (falls now and then)."""
    rng = np.random.default_rng([seed, 11])
    size = np.asarray(room_size_m, dtype=np.float64)
    script = PersonScript(person_id, float(np.clip(rng.normal(1.70, 0.09), 1.5, 1.95)), size,
                          random_seed=seed, fall_probability=fall_probability)
    start = rng.uniform(ROOM_MARGIN_M, 1.0, 2) * (size[:2] - ROOM_MARGIN_M)
    script.start(np.maximum(start, ROOM_MARGIN_M), float(rng.uniform(-np.pi, np.pi)))
    return script

