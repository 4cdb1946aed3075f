"""The domain event catalogue: the seed's event names and builders of their payloads.

Payloads follow the seed's examples (``person_id``, ``timestamp`` as ISO-8601 UTC with a
``Z``, ``location`` = ``{zone_id, x, y}`` in the space's normalised view, ``confidence``);
fields beyond the examples are additions, never renames. ``make_event`` wraps a payload
in the wire model :class:`invispose.schemas.Event`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import ValidationError

from invispose.event_schemas import SCHEMAS
from invispose.schemas import Event

# Pose events
PERSON_DETECTED = "person.detected"
PERSON_LOST = "person.lost"
PERSON_ENTERED_ZONE = "person.entered_zone"
PERSON_LEFT_ZONE = "person.left_zone"
FALL_DETECTED = "person.fall_detected"
ACTIVITY_DETECTED = "person.activity_detected"
# System events
SYSTEM_STARTED = "system.started"
SYSTEM_STOPPED = "system.stopped"
ROUTER_CONNECTED = "router.connected"
ROUTER_DISCONNECTED = "router.disconnected"
# Alert events
HIGH_OCCUPANCY = "alert.high_occupancy"
RESTRICTED_ZONE_BREACH = "alert.restricted_zone_breach"
SYSTEM_ERROR = "alert.system_error"
PERFORMANCE_DEGRADED = "alert.performance_degraded"
# Analytics events
REPORT_GENERATED = "analytics.report_generated"
THRESHOLD_EXCEEDED = "analytics.threshold_exceeded"

POSE_EVENTS: tuple[str, ...] = (
    PERSON_DETECTED,
    PERSON_LOST,
    PERSON_ENTERED_ZONE,
    PERSON_LEFT_ZONE,
    FALL_DETECTED,
    ACTIVITY_DETECTED,
)
SYSTEM_EVENTS: tuple[str, ...] = (
    SYSTEM_STARTED,
    SYSTEM_STOPPED,
    ROUTER_CONNECTED,
    ROUTER_DISCONNECTED,
)
ALERT_EVENTS: tuple[str, ...] = (
    HIGH_OCCUPANCY,
    RESTRICTED_ZONE_BREACH,
    SYSTEM_ERROR,
    PERFORMANCE_DEGRADED,
)
ANALYTICS_EVENTS: tuple[str, ...] = (REPORT_GENERATED, THRESHOLD_EXCEEDED)
#: every event name of the seed catalogue, in the seed's order
EVENT_TYPES: tuple[str, ...] = POSE_EVENTS + SYSTEM_EVENTS + ALERT_EVENTS + ANALYTICS_EVENTS

Location = dict[str, Any]


def iso_utc(timestamp: dt.datetime) -> str:
    """ISO-8601 in UTC with a ``Z`` suffix, as the seed's payloads write times."""
    if timestamp.tzinfo is None:
        timestamp = timestamp.replace(tzinfo=dt.UTC)
    return timestamp.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def utc_from_epoch(seconds: float) -> dt.datetime:
    """Aware UTC datetime of a wall-clock ``time.time()`` value."""
    return dt.datetime.fromtimestamp(seconds, tz=dt.UTC)


def is_known(event_type: str) -> bool:
    """Whether the name belongs to the seed catalogue."""
    return event_type in EVENT_TYPES


def matches(patterns: Iterable[str], event_type: str) -> bool:
    """Whether a subscription list (names, ``"*"`` or ``"person.*"``) selects the event."""
    for pattern in patterns:
        if pattern in ("*", event_type):
            return True
        if pattern.endswith(".*") and event_type.startswith(pattern[:-1]):
            return True
    return False


def make_event(
    event_type: str,
    data: dict[str, Any],
    timestamp: dt.datetime,
    space_id: str | None = None,
) -> Event:
    """Wrap a payload in the wire model; unknown names, and payloads that do not match
    their type's schema (``invispose.event_schemas``), are rejected."""
    if not is_known(event_type):
        raise ValueError(f"unknown event type {event_type!r}")
    try:
        SCHEMAS[event_type].model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ValueError(f"{event_type} payload does not match its schema: {problems}") from exc
    return Event(type=event_type, timestamp=timestamp, space_id=space_id, data=data)


def location(
    zone_id: str | None,
    x: float,
    y: float,
    position_m: Sequence[float] | None = None,
) -> Location:
    """Seed location: zone and normalised view x/y; ``position_m`` adds room metres."""
    loc: Location = {"zone_id": zone_id, "x": round(float(x), 4), "y": round(float(y), 4)}
    if position_m is not None:
        loc["position_m"] = [round(float(v), 3) for v in position_m]
    return loc


# -- pose events ----------------------------------------------------------------------------


def person_detected(
    person_id: str,
    timestamp: dt.datetime,
    where: Location,
    confidence: float,
    activity: str | None = None,
) -> dict[str, Any]:
    """Payload of ``person.detected``: a new person has a stable track."""
    return {
        "person_id": person_id,
        "timestamp": iso_utc(timestamp),
        "location": where,
        "confidence": round(float(confidence), 4),
        "activity": activity,
    }


def person_lost(
    person_id: str,
    timestamp: dt.datetime,
    where: Location,
    last_seen: dt.datetime,
    tracked_seconds: float,
) -> dict[str, Any]:
    """Payload of ``person.lost``: the track went unseen too long and ended."""
    return {
        "person_id": person_id,
        "timestamp": iso_utc(timestamp),
        "location": where,
        "last_seen": iso_utc(last_seen),
        "tracked_seconds": round(float(tracked_seconds), 3),
    }


def person_entered_zone(
    person_id: str,
    zone_id: str,
    timestamp: dt.datetime,
    where: Location,
    zone_name: str = "",
    occupancy: int | None = None,
) -> dict[str, Any]:
    """Payload of ``person.entered_zone``."""
    return {
        "person_id": person_id,
        "zone_id": zone_id,
        "zone_name": zone_name,
        "timestamp": iso_utc(timestamp),
        "location": where,
        "occupancy": occupancy,
    }


def person_left_zone(
    person_id: str,
    zone_id: str,
    timestamp: dt.datetime,
    where: Location,
    duration_seconds: float,
    zone_name: str = "",
    occupancy: int | None = None,
    reason: str = "moved",
) -> dict[str, Any]:
    """Payload of ``person.left_zone``; ``reason`` is "moved" or "lost" (track ended)."""
    return {
        "person_id": person_id,
        "zone_id": zone_id,
        "zone_name": zone_name,
        "timestamp": iso_utc(timestamp),
        "location": where,
        "duration_seconds": round(float(duration_seconds), 3),
        "occupancy": occupancy,
        "reason": reason,
    }


def fall_detected(
    person_id: str,
    timestamp: dt.datetime,
    where: Location,
    confidence: float,
    severity: str,
    alert_triggered: bool = True,
    fall_speed_mps: float | None = None,
    drop_m: float | None = None,
) -> dict[str, Any]:
    """Payload of ``person.fall_detected`` (seed fields plus the measured drop)."""
    return {
        "person_id": person_id,
        "timestamp": iso_utc(timestamp),
        "location": where,
        "confidence": round(float(confidence), 4),
        "severity": severity,
        "alert_triggered": alert_triggered,
        "fall_speed_mps": fall_speed_mps,
        "drop_m": drop_m,
    }


def activity_detected(
    person_id: str,
    timestamp: dt.datetime,
    where: Location,
    activity: str,
    previous_activity: str | None,
    confidence: float,
) -> dict[str, Any]:
    """Payload of ``person.activity_detected``: the person's activity changed."""
    return {
        "person_id": person_id,
        "timestamp": iso_utc(timestamp),
        "location": where,
        "activity": activity,
        "previous_activity": previous_activity,
        "confidence": round(float(confidence), 4),
    }


# -- system events --------------------------------------------------------------------------


def system_started(timestamp: dt.datetime, version: str, **details: Any) -> dict[str, Any]:
    """Payload of ``system.started``."""
    return {"timestamp": iso_utc(timestamp), "version": version, **details}


def system_stopped(timestamp: dt.datetime, reason: str = "shutdown") -> dict[str, Any]:
    """Payload of ``system.stopped``."""
    return {"timestamp": iso_utc(timestamp), "reason": reason}


def router_connected(
    router_id: str, timestamp: dt.datetime, space_id: str | None = None, kind: str | None = None
) -> dict[str, Any]:
    """Payload of ``router.connected``: CSI started arriving from the router."""
    return {
        "router_id": router_id,
        "timestamp": iso_utc(timestamp),
        "space_id": space_id,
        "kind": kind,
    }


def router_disconnected(
    router_id: str,
    timestamp: dt.datetime,
    space_id: str | None = None,
    reason: str | None = None,
    silent_seconds: float | None = None,
) -> dict[str, Any]:
    """Payload of ``router.disconnected``: the router's CSI stopped or its source failed."""
    return {
        "router_id": router_id,
        "timestamp": iso_utc(timestamp),
        "space_id": space_id,
        "reason": reason,
        "silent_seconds": silent_seconds,
    }


# -- alert events ---------------------------------------------------------------------------


def high_occupancy(
    zone_id: str,
    timestamp: dt.datetime,
    current_occupancy: int,
    max_occupancy: int,
    duration_seconds: float,
    person_ids: list[str] | None = None,
) -> dict[str, Any]:
    """Payload of ``alert.high_occupancy`` (seed fields; ``person_ids`` added)."""
    return {
        "zone_id": zone_id,
        "timestamp": iso_utc(timestamp),
        "current_occupancy": current_occupancy,
        "max_occupancy": max_occupancy,
        "duration_seconds": round(float(duration_seconds), 3),
        "person_ids": person_ids or [],
    }


def restricted_zone_breach(
    zone_id: str,
    timestamp: dt.datetime,
    person_id: str,
    where: Location,
    zone_name: str = "",
) -> dict[str, Any]:
    """Payload of ``alert.restricted_zone_breach``: a person entered a restricted zone."""
    return {
        "zone_id": zone_id,
        "zone_name": zone_name,
        "timestamp": iso_utc(timestamp),
        "person_id": person_id,
        "location": where,
    }


def system_error(
    timestamp: dt.datetime, component: str, message: str, severity: str = "error"
) -> dict[str, Any]:
    """Payload of ``alert.system_error``."""
    return {
        "timestamp": iso_utc(timestamp),
        "component": component,
        "message": message,
        "severity": severity,
    }


def performance_degraded(
    timestamp: dt.datetime,
    metric: str,
    value: float,
    threshold: float,
    component: str | None = None,
) -> dict[str, Any]:
    """Payload of ``alert.performance_degraded``: a metric crossed its budget."""
    return {
        "timestamp": iso_utc(timestamp),
        "metric": metric,
        "value": value,
        "threshold": threshold,
        "component": component,
    }


# -- analytics events -----------------------------------------------------------------------


def report_generated(
    timestamp: dt.datetime,
    report_id: str,
    period_start: dt.datetime,
    period_end: dt.datetime,
    summary: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Payload of ``analytics.report_generated``."""
    return {
        "timestamp": iso_utc(timestamp),
        "report_id": report_id,
        "period_start": iso_utc(period_start),
        "period_end": iso_utc(period_end),
        "summary": summary or {},
    }


def threshold_exceeded(
    timestamp: dt.datetime,
    metric: str,
    value: float,
    threshold: float,
    zone_id: str | None = None,
) -> dict[str, Any]:
    """Payload of ``analytics.threshold_exceeded``."""
    return {
        "timestamp": iso_utc(timestamp),
        "metric": metric,
        "value": value,
        "threshold": threshold,
        "zone_id": zone_id,
    }
