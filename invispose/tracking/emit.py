"""Domain events of a tracking step, built from tracks and zone changes."""

from __future__ import annotations

import datetime as dt

import numpy as np
import numpy.typing as npt

from invispose import events as ev
from invispose.schemas import Event
from invispose.tracking.activity import FallInfo
from invispose.tracking.track import Track
from invispose.tracking.zones import BREACH, ENTERED, HIGH_OCCUPANCY, ZoneChange, ZoneMonitor

F64 = npt.NDArray[np.float64]
L_HIP, R_HIP = 11, 12


def locations(
    person_ids: list[str], boxes: F64, keypoints_m: F64, zone_ids: list[str | None]
) -> dict[str, ev.Location]:
    """Seed locations: bounding-box centre (R, 4) in the view, hip centre (R, 17, 3) in metres."""
    if not person_ids:
        return {}
    cx = (boxes[:, 0] + boxes[:, 2] / 2).tolist()
    cy = (boxes[:, 1] + boxes[:, 3] / 2).tolist()
    hips = keypoints_m[:, (L_HIP, R_HIP)].mean(axis=1).tolist()  # (R, 3)
    return {
        pid: ev.location(zone_ids[n], cx[n], cy[n], hips[n]) for n, pid in enumerate(person_ids)
    }


def _where(where: dict[str, ev.Location], person_id: str) -> ev.Location:
    return where.get(person_id) or ev.location(None, 0.0, 0.0)


def detected_event(
    tr: Track, wall: dt.datetime, where: dict[str, ev.Location], space_id: str
) -> Event:
    """``person.detected`` for a newly confirmed track."""
    pid = str(tr.person_id)
    data = ev.person_detected(pid, wall, _where(where, pid), tr.presence, tr.activity.activity)
    return ev.make_event(ev.PERSON_DETECTED, data, wall, space_id)


def lost_event(
    tr: Track, wall: dt.datetime, where: dict[str, ev.Location], offset_s: float, space_id: str
) -> Event:
    """``person.lost``; ``offset_s`` turns the tracker clock back into wall time."""
    pid = str(tr.person_id)
    last_seen = ev.utc_from_epoch(tr.last_seen_s + offset_s)
    data = ev.person_lost(
        pid, wall, _where(where, pid), last_seen, tr.last_seen_s - tr.first_seen_s
    )
    return ev.make_event(ev.PERSON_LOST, data, wall, space_id)


def fall_event(
    tr: Track, fall: FallInfo, wall: dt.datetime, where: dict[str, ev.Location], space_id: str
) -> Event:
    """``person.fall_detected``."""
    pid = str(tr.person_id)
    data = ev.fall_detected(
        pid,
        wall,
        _where(where, pid),
        fall.confidence,
        fall.severity,
        alert_triggered=True,
        fall_speed_mps=fall.speed_mps,
        drop_m=fall.drop_m,
    )
    return ev.make_event(ev.FALL_DETECTED, data, wall, space_id)


def activity_event(
    tr: Track,
    change: tuple[str | None, str],
    wall: dt.datetime,
    where: dict[str, ev.Location],
    space_id: str,
) -> Event:
    """``person.activity_detected`` for a change of activity."""
    pid = str(tr.person_id)
    previous, current = change
    data = ev.activity_detected(pid, wall, _where(where, pid), current, previous, tr.presence)
    return ev.make_event(ev.ACTIVITY_DETECTED, data, wall, space_id)


def zone_event(
    change: ZoneChange,
    wall: dt.datetime,
    where: dict[str, ev.Location],
    monitor: ZoneMonitor,
    space_id: str,
) -> Event:
    """The event of a zone change: entered, left, restricted breach or high occupancy."""
    zone = change.zone
    if change.kind == HIGH_OCCUPANCY:
        persons = monitor.occupancy()[zone.id]["person_ids"]
        data = ev.high_occupancy(
            zone.id, wall, change.count, int(zone.max_occupancy or 0), change.duration_s, persons
        )
        return ev.make_event(ev.HIGH_OCCUPANCY, data, wall, space_id)
    pid = str(change.person_id)
    loc = _where(where, pid)
    if change.kind == BREACH:
        data = ev.restricted_zone_breach(zone.id, wall, pid, loc, zone.name)
        return ev.make_event(ev.RESTRICTED_ZONE_BREACH, data, wall, space_id)
    if change.kind == ENTERED:
        data = ev.person_entered_zone(pid, zone.id, wall, loc, zone.name, change.count)
        return ev.make_event(ev.PERSON_ENTERED_ZONE, data, wall, space_id)
    data = ev.person_left_zone(
        pid,
        zone.id,
        wall,
        loc,
        change.duration_s,
        zone.name,
        change.count,
        change.reason or "moved",
    )
    return ev.make_event(ev.PERSON_LEFT_ZONE, data, wall, space_id)
