"""The payload of every event type of the seed's catalogue, as a typed schema.

``invispose.events`` builds the payloads; ``make_event`` checks each against its schema
here, so a component can never emit a payload that differs from what integrators were
told (``GET /api/v1/events/schemas`` serves these as JSON Schema). Times are ISO 8601 UTC
strings, as on the wire.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    timestamp: str = Field(..., description="When it happened (ISO 8601, UTC)")


class Location(BaseModel):
    """Where a person is: zone, the seed's normalised view x/y, and room metres."""

    model_config = ConfigDict(extra="forbid")

    zone_id: str | None = None
    x: float
    y: float
    position_m: list[float] | None = Field(None, min_length=3, max_length=3)


class PersonDetected(_Payload):
    person_id: str
    location: Location | None = None
    confidence: float
    activity: str | None = None


class PersonLost(_Payload):
    person_id: str
    location: Location | None = None
    last_seen: str
    tracked_seconds: float


class PersonEnteredZone(_Payload):
    person_id: str
    zone_id: str
    zone_name: str | None = None
    location: Location | None = None
    occupancy: int | None = None


class PersonLeftZone(_Payload):
    person_id: str
    zone_id: str
    zone_name: str | None = None
    location: Location | None = None
    duration_seconds: float
    occupancy: int | None = None
    reason: str | None = None


class FallDetected(_Payload):
    person_id: str
    location: Location | None = None
    confidence: float
    severity: str
    alert_triggered: bool
    fall_speed_mps: float | None = None
    drop_m: float | None = None


class ActivityDetected(_Payload):
    person_id: str
    location: Location | None = None
    activity: str
    previous_activity: str | None = None
    confidence: float


class SystemStarted(_Payload):
    model_config = ConfigDict(extra="allow")  # what started: routers, spaces, ...

    version: str


class SystemStopped(_Payload):
    reason: str


class RouterConnected(_Payload):
    router_id: str
    space_id: str | None = None
    kind: str | None = None


class RouterDisconnected(_Payload):
    router_id: str
    space_id: str | None = None
    reason: str | None = None
    silent_seconds: float | None = None


class HighOccupancy(_Payload):
    zone_id: str
    current_occupancy: int
    max_occupancy: int
    duration_seconds: float
    person_ids: list[str]


class RestrictedZoneBreach(_Payload):
    zone_id: str
    zone_name: str | None = None
    person_id: str
    location: Location | None = None


class SystemError(_Payload):
    component: str
    message: str
    severity: str


class PerformanceDegraded(_Payload):
    metric: str
    value: float
    threshold: float
    component: str | None = None


class ReportGenerated(_Payload):
    report_id: str
    period_start: str
    period_end: str
    summary: dict[str, Any]


class ThresholdExceeded(_Payload):
    metric: str
    value: float
    threshold: float
    zone_id: str | None = None
    person_id: str | None = None


SCHEMAS: dict[str, type[BaseModel]] = {
    "person.detected": PersonDetected,
    "person.lost": PersonLost,
    "person.entered_zone": PersonEnteredZone,
    "person.left_zone": PersonLeftZone,
    "person.fall_detected": FallDetected,
    "person.activity_detected": ActivityDetected,
    "system.started": SystemStarted,
    "system.stopped": SystemStopped,
    "router.connected": RouterConnected,
    "router.disconnected": RouterDisconnected,
    "alert.high_occupancy": HighOccupancy,
    "alert.restricted_zone_breach": RestrictedZoneBreach,
    "alert.system_error": SystemError,
    "alert.performance_degraded": PerformanceDegraded,
    "analytics.report_generated": ReportGenerated,
    "analytics.threshold_exceeded": ThresholdExceeded,
}


def json_schemas() -> dict[str, dict[str, Any]]:
    """Every event type's payload as JSON Schema."""
    return {name: model.model_json_schema() for name, model in SCHEMAS.items()}
