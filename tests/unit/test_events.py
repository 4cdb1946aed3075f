"""The seed's event catalogue and the payloads built for it."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from invispose import events as ev
from invispose.schemas import Event

SEED = Path(__file__).resolve().parents[2].parent / "shared" / "seed" / "api-architecture.md"
WHEN = dt.datetime(2025, 1, 7, 10, 30, tzinfo=dt.UTC)
WHERE = ev.location("zone_1", 0.5, 0.7)


def test_catalogue_is_exactly_the_seeds_event_names() -> None:
    text = SEED.read_text(encoding="utf-8")
    block = text[text.index("class WebhookEvents") : text.index("# Event payload examples")]
    seed_names = re.findall(r'= "([a-z_]+\.[a-z_]+)"', block)
    assert len(seed_names) == 16
    assert list(ev.EVENT_TYPES) == seed_names
    assert len(set(ev.EVENT_TYPES)) == 16
    groups = ev.POSE_EVENTS + ev.SYSTEM_EVENTS + ev.ALERT_EVENTS + ev.ANALYTICS_EVENTS
    assert sorted(groups) == sorted(ev.EVENT_TYPES)
    assert ev.FALL_DETECTED == "person.fall_detected"
    assert ev.HIGH_OCCUPANCY == "alert.high_occupancy"


def test_timestamps_are_utc_with_z() -> None:
    assert ev.iso_utc(WHEN) == "2025-01-07T10:30:00Z"
    naive = dt.datetime(2025, 1, 7, 10, 30)
    assert ev.iso_utc(naive) == "2025-01-07T10:30:00Z"
    plus_one = dt.datetime(2025, 1, 7, 11, 30, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    assert ev.iso_utc(plus_one) == "2025-01-07T10:30:00Z"
    assert ev.utc_from_epoch(0.0) == dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def test_payloads_carry_the_seed_examples_fields() -> None:
    detected = ev.person_detected("person_123", WHEN, WHERE, 0.95)
    assert detected["person_id"] == "person_123"
    assert detected["timestamp"] == "2025-01-07T10:30:00Z"
    assert detected["location"] == {"zone_id": "zone_1", "x": 0.5, "y": 0.7}
    assert detected["confidence"] == 0.95

    fall = ev.fall_detected("person_456", WHEN, ev.location("zone_2", 0.3, 0.4), 0.89, "high")
    seed_fall = {"person_id", "timestamp", "location", "confidence", "severity", "alert_triggered"}
    assert seed_fall <= set(fall) and fall["alert_triggered"] is True

    crowd = ev.high_occupancy("zone_main", WHEN, 25, 20, 300)
    seed_crowd = {"zone_id", "timestamp", "current_occupancy", "max_occupancy", "duration_seconds"}
    assert seed_crowd <= set(crowd)
    assert (crowd["current_occupancy"], crowd["max_occupancy"]) == (25, 20)


@pytest.mark.parametrize(
    ("event_type", "payload"),
    [
        (ev.PERSON_LOST, ev.person_lost("p", WHEN, WHERE, WHEN, 12.5)),
        (ev.PERSON_ENTERED_ZONE, ev.person_entered_zone("p", "z", WHEN, WHERE, "Desk", 1)),
        (ev.PERSON_LEFT_ZONE, ev.person_left_zone("p", "z", WHEN, WHERE, 3.0, reason="lost")),
        (ev.ACTIVITY_DETECTED, ev.activity_detected("p", WHEN, WHERE, "sitting", None, 0.8)),
        (ev.SYSTEM_STARTED, ev.system_started(WHEN, "0.1.0", routers=2)),
        (ev.SYSTEM_STOPPED, ev.system_stopped(WHEN)),
        (ev.ROUTER_CONNECTED, ev.router_connected("r1", WHEN, "lab", "esp32-udp")),
        (ev.ROUTER_DISCONNECTED, ev.router_disconnected("r1", WHEN, "lab", "timeout", 5.0)),
        (ev.RESTRICTED_ZONE_BREACH, ev.restricted_zone_breach("z", WHEN, "p", WHERE)),
        (ev.SYSTEM_ERROR, ev.system_error(WHEN, "store", "disk full")),
        (ev.PERFORMANCE_DEGRADED, ev.performance_degraded(WHEN, "latency_p99_ms", 180.0, 100.0)),
        (ev.REPORT_GENERATED, ev.report_generated(WHEN, "daily", WHEN, WHEN)),
        (ev.THRESHOLD_EXCEEDED, ev.threshold_exceeded(WHEN, "occupancy", 9, 8, "z")),
    ],
)
def test_every_payload_wraps_into_an_event(event_type: str, payload: dict[str, object]) -> None:
    event = ev.make_event(event_type, payload, WHEN, "lab")
    assert payload["timestamp"] == "2025-01-07T10:30:00Z"
    assert Event.model_validate_json(event.model_dump_json()) == event
    assert event.type == event_type and event.space_id == "lab" and event.id is None


def test_unknown_names_are_refused() -> None:
    with pytest.raises(ValueError):
        ev.make_event("person.teleported", {}, WHEN)
    with pytest.raises(ValidationError):
        Event.model_validate({"type": "person.lost", "timestamp": "not a time"})


def test_subscription_patterns() -> None:
    assert ev.matches(["*"], ev.PERSON_LOST)
    assert ev.matches(["person.*"], ev.FALL_DETECTED)
    assert not ev.matches(["person.*"], ev.HIGH_OCCUPANCY)
    assert ev.matches([ev.HIGH_OCCUPANCY], ev.HIGH_OCCUPANCY)
    assert not ev.matches([], ev.PERSON_LOST)
    assert ev.location("z", 0.123456, 0.5, (1.0, 2.0, 3.0))["position_m"] == [1.0, 2.0, 3.0]


def test_every_type_has_a_schema_and_a_payload_that_differs_is_refused() -> None:
    from invispose.event_schemas import SCHEMAS, json_schemas

    assert set(SCHEMAS) == set(ev.EVENT_TYPES)
    with pytest.raises(ValueError, match="person_id"):
        ev.make_event(ev.PERSON_DETECTED, {"timestamp": "2026-01-01T00:00:00+00:00",
                                           "confidence": 0.9}, WHEN)
    with pytest.raises(ValueError, match="debug: Extra"):  # no field beyond the schema
        ev.make_event(ev.SYSTEM_STOPPED, {**ev.system_stopped(WHEN), "debug": 1}, WHEN)
    schema = json_schemas()["person.fall_detected"]
    assert {"person_id", "confidence", "severity"} <= set(schema["required"])
