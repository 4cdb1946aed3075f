"""The per-space tracker: fuse routers, keep person ids, classify activity, watch zones.

``Tracker.update`` takes the newest detections of a space's routers and returns the seed's
PoseFrame and the domain events of that step. It holds no threads and no I/O; the tracker
actor calls it 20 times a second and persists ``snapshot()`` so a restart keeps person ids.

Times: ``now_s`` is wall-clock seconds (``time.time()``) and stamps every output. Inside,
the tracker runs on its own clock (``now_s`` minus an offset) that never goes backwards and
that skips the time a restored tracker was down, so tracks do not expire while it restarts.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from invispose import events as ev
from invispose.config import SiteConfig, SpaceConfig, ZoneConfig
from invispose.errors import ConfigError, InvisPoseError
from invispose.schemas import Detection, Event, PoseFrame
from invispose.tracking import emit
from invispose.tracking.activity import ActivityParams, FallInfo, classify_posture, posture
from invispose.tracking.assign import Observations, fuse, gather_candidates, match
from invispose.tracking.frame import bounding_boxes, build_frame, build_persons
from invispose.tracking.kalman import ConstantVelocityKalman
from invispose.tracking.track import Track, TrackBank
from invispose.tracking.view import project
from invispose.tracking.zones import ZoneChange, ZoneMonitor

logger = logging.getLogger(__name__)

F64 = npt.NDArray[np.float64]
SNAPSHOT_VERSION = 1
WALL_CLEARANCE_M = 0.15  # a body centre stays this far inside the walls
L_ANKLE, R_ANKLE = 15, 16


def _take(a: F64, rows: list[int]) -> F64:
    """Rows of ``a``; the array itself when the rows are all of them, in order."""
    if len(rows) == a.shape[0] and rows == list(range(len(rows))):
        return a
    return a[np.asarray(rows, dtype=np.int64)]


def _unit(a: F64) -> F64:
    """Clamp to 0–1 (``np.clip`` costs several times more on small arrays)."""
    return np.minimum(np.maximum(a, 0.0), 1.0)


@dataclass(slots=True)
class TrackerUpdate:
    """What one tracking step produced."""

    pose_frame: PoseFrame
    events: list[Event]


class Tracker:
    """Stable person ids, activities and zone occupancy for one space."""

    def __init__(
        self,
        *,
        space: SpaceConfig,
        zones: list[ZoneConfig] | None = None,
        min_presence: float = 0.5,
        fuse_distance_m: float = 0.5,
        match_distance_m: float = 0.7,
        max_gate_m: float = 1.5,
        confirm_hits: int = 3,
        confirm_s: float = 0.5,
        lost_after_s: float = 1.0,
        keypoint_alpha: float = 0.5,
        ankle_min_conf: float = 0.3,
        zone_hold_s: float = 0.25,
        occupancy_repeat_s: float | None = 300.0,
        kalman: ConstantVelocityKalman | None = None,
        activity: ActivityParams | None = None,
    ) -> None:
        zones = list(zones or [])
        for zone in zones:
            if zone.space != space.id:
                raise ConfigError(
                    f"zone {zone.id!r} lies in space {zone.space!r}, not {space.id!r}"
                )
        self.space = space
        self.zones = zones
        self.min_presence = min_presence  # slot presence that makes a person candidate
        self.fuse_distance_m = fuse_distance_m  # two routers' candidates closer: one person
        self.match_distance_m = match_distance_m  # gate of a well-tracked person
        self.max_gate_m = max_gate_m  # gate of a person unseen for a while
        self.confirm_hits = confirm_hits  # consecutive observations before an id is given
        # ... spanning at least this long: at 20 hops/s three hits are 0.1 s, and a slot that
        # wanders for a few hops became a person (32 ids for 2 people in the demo's 40 s)
        self.confirm_s = confirm_s
        self.lost_after_s = lost_after_s  # an id survives this long without observations
        self.keypoint_alpha = keypoint_alpha  # smoothing of keypoints around the centre
        self.ankle_min_conf = ankle_min_conf  # ankles below this: zones use the hip centre
        self.kf = kalman or ConstantVelocityKalman()
        self.activity_params = activity or ActivityParams()
        self.zone_monitor = ZoneMonitor(zones, zone_hold_s, occupancy_repeat_s)
        self._room_size_m = np.asarray(space.size_m, dtype=np.float64)  # (3,)
        self._bank = TrackBank()
        self.rejected_detections = 0  # detections of another space or with bad shapes
        self._next_person = 1
        self._next_key = 1
        self._frame_id = 0
        self._last_t: float | None = None
        self._offset_s = 0.0  # tracker clock = wall clock - offset
        self._rebase = False  # a restored tracker re-anchors its clock on the next update

    @classmethod
    def from_config(cls, site_config: SiteConfig, space_id: str, **tunables: Any) -> Tracker:
        """The tracker of one space of a site, with that space's zones."""
        try:
            space = site_config.space(space_id)
        except KeyError as exc:
            raise ConfigError(f"unknown space {space_id!r}") from exc
        zones = [z for z in site_config.zones if z.space == space_id]
        return cls(space=space, zones=zones, **tunables)

    # -- the step ---------------------------------------------------------------------------

    def update(self, detections: list[Detection], now_s: float) -> TrackerUpdate:
        """Fuse one round of detections, advance every track, and report frame and events."""
        started = time.perf_counter()
        t = self._clock(now_s)
        dt_s = 0.0 if self._last_t is None else t - self._last_t
        self._last_t = t
        self._frame_id += 1
        wall = ev.utc_from_epoch(now_s)
        candidates = gather_candidates(detections, self.space.id, self.min_presence)
        sid = self.space.id
        if candidates.rejected:
            self.rejected_detections += candidates.rejected
            if self.rejected_detections == candidates.rejected:
                logger.warning("space %s: detection rejected (other space or bad shapes)", sid)
        obs = fuse(candidates, self.fuse_distance_m)

        # predict, assign, correct
        bank = self._bank
        observed: list[int] = []  # bank rows (after this step) observed in this step
        lost: list[Track] = []
        lost_where: dict[str, ev.Location] = {}
        keep: list[int] = []
        new_obs = list(range(len(obs)))
        if len(bank):
            bank.x, bank.p = self.kf.predict(bank.x, bank.p, dt_s)
            gate = np.minimum(
                self.match_distance_m + 2.0 * self.kf.position_std_m(bank.p), self.max_gate_m
            )
            pairs, _, new_obs = match(bank.x[:, :3], obs.centre_m, gate)
            matched = dict(pairs)
            if pairs:
                self._correct(bank, obs, pairs, t)
            lost_rows: list[int] = []
            for i, tr in enumerate(bank.tracks):
                if i in matched:
                    observed.append(len(keep))
                    keep.append(i)
                elif not tr.confirmed:
                    continue  # a tentative track must be seen in consecutive steps
                elif t - tr.last_seen_s > self.lost_after_s:
                    lost_rows.append(i)
                else:
                    keep.append(i)
            if lost_rows:
                lost = [bank.tracks[i] for i in lost_rows]
                lost_where = self._last_locations(lost_rows)
            bank.select(keep)
        if new_obs:
            observed.extend(range(len(bank), len(bank) + len(new_obs)))
            self._spawn(bank, obs, new_obs, t)
        self._keep_inside(bank)
        tracks = bank.tracks
        kp_all = bank.keypoints_m()  # (N, 17, 3)

        # activity of the tracks seen this step (coasting tracks keep theirs)
        changes: list[tuple[Track, tuple[str | None, str] | None, FallInfo | None]] = []
        if observed:
            params = self.activity_params
            vel = _take(bank.x, observed)[:, 3:].tolist()  # (n, 3)
            kp_rows = _take(kp_all, observed).tolist()  # (n, 17, 3)
            conf_rows = _take(bank.conf, observed).tolist()  # (n, 17)
            for i, kp, conf, (vx, vy, vz) in zip(observed, kp_rows, conf_rows, vel, strict=True):
                tr = tracks[i]
                pose = posture(kp, conf, params)
                label = classify_posture(pose, math.hypot(vx, vy), params)
                change, fall = tr.activity.step(
                    label, pose.hip_z, pose.head_z, vz, pose.mean_conf, t, params
                )
                if change is not None or fall is not None:
                    changes.append((tr, change, fall))

        new_ids: set[str] = set()
        for tr in tracks:
            if (not tr.confirmed and tr.hits >= self.confirm_hits
                    and tr.last_seen_s - tr.first_seen_s >= self.confirm_s - 1e-9):
                tr.person_id = f"person_{self._next_person}"
                self._next_person += 1
                new_ids.add(tr.person_id)

        # the reported persons: zones, view projection
        rep = [i for i, tr in enumerate(tracks) if tr.confirmed]
        reported = [tracks[i] for i in rep]
        ids = [str(tr.person_id) for tr in reported]
        zone_changes: list[ZoneChange] = []
        for tr in lost:
            zone_changes.extend(self.zone_monitor.remove(str(tr.person_id), t))
        kp_r, conf_r = _take(kp_all, rep), _take(bank.conf, rep)  # (R, 17, 3), (R, 17)
        if rep:
            floor_m = self._floor_points(kp_r, conf_r, _take(bank.x, rep)[:, :2])  # (R, 2)
            zone_changes.extend(self.zone_monitor.update(ids, floor_m, t, new_ids))
        u, v = project(self.space.view, kp_r, self._room_size_m)  # (R, 17) each
        u, v = _unit(u), _unit(v)
        boxes = bounding_boxes(u, v, conf_r)  # (R, 4)
        miss = np.array([t - tr.last_seen_s for tr in reported])
        presence = np.array([tr.presence for tr in reported])
        person_conf = _unit(presence * (1.0 - miss / self.lost_after_s))
        zone_of = [self.zone_monitor.zone_of(pid) for pid in ids]

        events: list[Event] = []
        if lost or new_ids or zone_changes or changes:
            where = emit.locations(ids, boxes, kp_r, zone_of) | lost_where
            events = self._events(wall, lost, reported, new_ids, zone_changes, changes, where)

        persons = build_persons(
            ids,
            kp_r,
            conf_r,
            u,
            v,
            boxes,
            person_conf,
            [tr.activity.activity for tr in reported],
            zone_of,
        )
        elapsed_ms = round((time.perf_counter() - started) * 1000.0, 3)
        metadata: dict[str, Any] = {
            "space_id": self.space.id,
            "view": self.space.view,
            "routers": candidates.router_ids,
            "t_end_s": candidates.newest_t_end_s,
            "latency_ms": {**candidates.latency_ms, "tracking": elapsed_ms},
            "candidates": len(candidates),
            "tracks": len(tracks),
        }
        if candidates.rejected:
            metadata["rejected_detections"] = candidates.rejected
        frame = build_frame(wall, self._frame_id, persons, elapsed_ms, metadata)
        return TrackerUpdate(frame, events)

    # -- queries and persistence ------------------------------------------------------------

    def configure_zone(self, zone: ZoneConfig) -> None:
        """Change (or add) a zone of this space, live."""
        if zone.space != self.space.id:
            raise ConfigError(f"zone {zone.id!r} lies in space {zone.space!r}, not "
                              f"{self.space.id!r}")
        self.zones = [z for z in self.zones if z.id != zone.id] + [zone]
        self.zone_monitor.reconfigure(zone)

    def zone_occupancy(self) -> dict[str, dict[str, Any]]:
        """Per zone id: occupancy_count, person_ids, max_occupancy, restricted, over_capacity."""
        return self.zone_monitor.occupancy()

    @property
    def person_ids(self) -> list[str]:
        """Ids of the persons reported now."""
        return [str(tr.person_id) for tr in self._bank.tracks if tr.confirmed]

    def snapshot(self) -> dict[str, Any]:
        """JSON-serialisable state: tracks, counters, zone membership and alert state."""
        return {
            "version": SNAPSHOT_VERSION,
            "space_id": self.space.id,
            "frame_id": self._frame_id,
            "next_person": self._next_person,
            "next_key": self._next_key,
            "last_t_s": self._last_t,
            "tracks": self._bank.to_list(),
            "zones": self.zone_monitor.to_dict(),
        }

    def restore(self, snapshot: dict[str, Any]) -> None:
        """Continue from ``snapshot()``: ids, counters and zones carry on; downtime is skipped."""
        if snapshot.get("version") != SNAPSHOT_VERSION:
            raise InvisPoseError(f"tracker snapshot version {snapshot.get('version')!r} unknown")
        if snapshot.get("space_id") != self.space.id:
            raise InvisPoseError(
                f"snapshot of space {snapshot.get('space_id')!r} cannot restore {self.space.id!r}"
            )
        try:
            bank = TrackBank.from_list(snapshot["tracks"])
            frame_id = int(snapshot["frame_id"])
            next_person = int(snapshot["next_person"])
            next_key = int(snapshot["next_key"])
            last_t = snapshot.get("last_t_s")
            last_t = None if last_t is None else float(last_t)
        except (KeyError, TypeError, ValueError) as exc:
            raise InvisPoseError(f"tracker snapshot is malformed: {exc!r}") from exc
        self._bank = bank
        self._frame_id, self._next_person, self._next_key = frame_id, next_person, next_key
        self._last_t = last_t
        self.zone_monitor.load(snapshot.get("zones", {}))
        self._rebase = last_t is not None

    # -- internals --------------------------------------------------------------------------

    def _clock(self, now_s: float) -> float:
        if self._rebase and self._last_t is not None:
            self._offset_s = now_s - self._last_t
            self._rebase = False
        t = now_s - self._offset_s
        if self._last_t is not None and t < self._last_t:
            t = self._last_t  # an out-of-order call does not move time backwards
        return t

    def _correct(
        self, bank: TrackBank, obs: Observations, pairs: list[tuple[int, int]], t: float
    ) -> None:
        """Kalman-correct matched tracks and blend the observed skeletons into them."""
        ti_list = [a for a, _ in pairs]
        oi = np.array([b for _, b in pairs])
        # every track matched, in order (the usual case): slices instead of fancy indexing
        ti: npt.NDArray[np.int64] | slice = (
            slice(None) if ti_list == list(range(len(bank))) else np.array(ti_list)
        )
        noise = 1.0 / np.sqrt(np.maximum(obs.presence[oi], 0.1))  # weak presence, less pull
        bank.x[ti], bank.p[ti] = self.kf.update(bank.x[ti], bank.p[ti], obs.centre_m[oi], noise)
        obs_off = obs.keypoints_m[oi] - obs.centre_m[oi][:, None, :]  # (n, 17, 3)
        obs_conf = obs.keypoint_conf[oi]  # (n, 17)
        # confident keypoints move fast, doubtful ones barely
        a = self.keypoint_alpha * np.minimum(np.maximum(2.0 * obs_conf, 0.05), 1.0)  # (n, 17)
        bank.offsets_m[ti] += a[..., None] * (obs_off - bank.offsets_m[ti])
        bank.conf[ti] += self.keypoint_alpha * (obs_conf - bank.conf[ti])
        for i, presence, views in zip(
            ti_list, obs.presence[oi].tolist(), obs.n_views[oi].tolist(), strict=True
        ):
            tr = bank.tracks[i]
            tr.presence += self.keypoint_alpha * (presence - tr.presence)
            tr.last_seen_s = t
            tr.hits += 1
            tr.n_views = views

    def _keep_inside(self, bank: TrackBank) -> None:
        """Hold filtered centres inside the room and stop their motion into a wall.

        A track coasting on its velocity (or pulled by a detection at a wall) would
        otherwise walk through the wall and be reported outside the space.
        """
        lo = np.full(2, WALL_CLEARANCE_M)
        hi = np.maximum(self._room_size_m[:2] - WALL_CLEARANCE_M, lo)
        xy = bank.x[:, :2]  # (N, 2) view into the state
        below, above = xy < lo, xy > hi
        if not (below.any() or above.any()):
            return
        np.clip(xy, lo, hi, out=xy)
        v = bank.x[:, 3:5]  # (N, 2)
        v[(below & (v < 0)) | (above & (v > 0))] = 0.0

    def _spawn(self, bank: TrackBank, obs: Observations, rows: list[int], t: float) -> None:
        """Open tentative tracks on unassigned observations."""
        oi = np.asarray(rows)
        centre = obs.centre_m[oi]  # (n, 3)
        x, p = self.kf.initiate(centre)  # (n, 6), (n, 3, 3)
        tracks = []
        presences, views = obs.presence[oi].tolist(), obs.n_views[oi].tolist()
        for presence, n_views in zip(presences, views, strict=True):
            tracks.append(Track(self._next_key, presence, t, t, n_views=n_views))
            self._next_key += 1
        offsets = obs.keypoints_m[oi] - centre[:, None, :]
        bank.append(x, p, offsets, obs.keypoint_conf[oi].copy(), tracks)

    def _floor_points(self, kp: F64, conf: F64, centre_m: F64) -> F64:
        """Ankle midpoints (R, 2), or the hip centre (R, 2) where an ankle is not confident."""
        ankles = kp[:, L_ANKLE : R_ANKLE + 1, :2]  # (R, 2 sides, 2)
        good = conf[:, L_ANKLE : R_ANKLE + 1].min(axis=1) >= self.ankle_min_conf  # (R,)
        return np.where(good[:, None], ankles.mean(axis=1), centre_m)

    def _last_locations(self, rows: list[int]) -> dict[str, ev.Location]:
        """Where the tracks in these bank rows (being lost) were last."""
        bank = self._bank
        kp = bank.keypoints_m()[rows]  # (n, 17, 3)
        u, v = project(self.space.view, kp, self._room_size_m)
        boxes = bounding_boxes(_unit(u), _unit(v), bank.conf[rows])
        ids = [str(bank.tracks[i].person_id) for i in rows]
        return emit.locations(ids, boxes, kp, [self.zone_monitor.zone_of(pid) for pid in ids])

    def _events(
        self,
        wall: dt.datetime,
        lost: list[Track],
        reported: list[Track],
        new_ids: set[str],
        zone_changes: list[ZoneChange],
        changes: list[tuple[Track, tuple[str | None, str] | None, FallInfo | None]],
        where: dict[str, ev.Location],
    ) -> list[Event]:
        """The step's events, in order: lost, detected, zones and alerts, falls, activities."""
        sid = self.space.id
        out = [emit.lost_event(tr, wall, where, self._offset_s, sid) for tr in lost]
        out += [
            emit.detected_event(tr, wall, where, sid) for tr in reported if tr.person_id in new_ids
        ]
        out += [emit.zone_event(c, wall, where, self.zone_monitor, sid) for c in zone_changes]
        for tr, change, fall in changes:
            if tr.person_id is None:
                continue
            if fall is not None:
                out.append(emit.fall_event(tr, fall, wall, where, sid))
            if change is not None and tr.person_id not in new_ids:
                out.append(emit.activity_event(tr, change, wall, where, sid))
        return out
