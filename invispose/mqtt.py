"""MQTT topics, payloads and Home Assistant discovery (seed §4), without a client.

Every topic is under ``mqtt.topic_prefix`` (default ``invispose``); the QoS and retain flag
of each is the seed's (``TOPICS``). The bridge (``actors/mqtt.py``) publishes what these
functions build.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from invispose import __version__
from invispose.config import SiteConfig


@dataclass(frozen=True)
class Topic:
    """A topic pattern with the seed's delivery flags."""

    pattern: str
    qos: int
    retain: bool


TOPICS = {
    "pose_current": Topic("pose/current", 0, True),
    "person_update": Topic("pose/person/{person_id}/update", 1, False),
    "zone_occupancy": Topic("pose/zone/{zone_id}/occupancy", 1, True),
    "system_status": Topic("system/status", 1, True),
    "system_alert": Topic("system/alerts/{category}", 2, False),
    "events": Topic("events", 1, False),
    "availability": Topic("availability", 1, True),
    "router_motion": Topic("router/{router_id}/motion", 1, True),
    "zone_configure_response": Topic("response/zone/{zone_id}/configure", 1, False),
    "command_response": Topic("response/{group}/{command}", 1, False),
}
ONLINE, OFFLINE, STOPPED = "online", "offline", "stopped"
SAFE = re.compile(r"[^A-Za-z0-9_-]")


def topic(prefix: str, name: str, **parts: str) -> tuple[str, int, bool]:
    """The full topic, QoS and retain flag of ``TOPICS[name]`` with its parts filled in
    (each part made safe for a topic level: no ``/``, ``+`` or ``#``)."""
    spec = TOPICS[name]
    safe = {k: SAFE.sub("_", str(v)) or "_" for k, v in parts.items()}
    return f"{prefix}/{spec.pattern.format(**safe)}", spec.qos, spec.retain


def pose_current(frame: dict[str, Any], space_id: str) -> dict[str, Any]:
    """The seed's ``pose/current`` payload: who is where, without keypoints."""
    return {
        "timestamp": frame.get("timestamp"),
        "frame_id": frame.get("frame_id"),
        "space_id": space_id,
        "person_count": len(frame.get("persons", [])),
        "persons": [
            {
                "id": p.get("id"),
                "confidence": p.get("confidence"),
                "zone_id": p.get("zone_id"),
                "activity": p.get("activity"),
                "position_m": _hip_centre(p),
                "keypoint_summary": {
                    "detected": sum(1 for k in p.get("keypoints", [])
                                    if float(k.get("confidence", 0)) > 0.5),
                    "total": len(p.get("keypoints", [])),
                },
            }
            for p in frame.get("persons", [])
        ],
    }


def _hip_centre(person: dict[str, Any]) -> list[float] | None:
    keypoints = person.get("keypoints", [])
    hips = [k.get("position_m") for k in keypoints[11:13] if k.get("position_m")]
    if len(hips) != 2:
        return None
    return [round((a + b) / 2, 3) for a, b in zip(hips[0], hips[1], strict=True)]


def person_update(frame: dict[str, Any], person: dict[str, Any]) -> dict[str, Any]:
    """The seed's ``pose/person/{id}/update`` payload (keypoints rounded)."""
    return {
        "timestamp": frame.get("timestamp"),
        "person_id": person.get("id"),
        "confidence": person.get("confidence"),
        "zone_id": person.get("zone_id"),
        "activity": person.get("activity"),
        "keypoints": [
            {"id": k.get("id"), "name": k.get("name"), "x": round(float(k.get("x", 0)), 3),
             "y": round(float(k.get("y", 0)), 3),
             "confidence": round(float(k.get("confidence", 0)), 3),
             "position_m": k.get("position_m")}
            for k in person.get("keypoints", [])
        ],
    }


def zone_occupancy(zone_id: str, persons: list[str], timestamp: str | None,
                   max_occupancy: int | None) -> dict[str, Any]:
    """``pose/zone/{zone}/occupancy``: the count and who."""
    return {"zone_id": zone_id, "occupancy_count": len(persons), "person_ids": persons,
            "max_occupancy": max_occupancy, "timestamp": timestamp}


def alert_category(event_type: str) -> str | None:
    """The ``system/alerts/{category}`` an event goes to, if any (falls are alerts)."""
    if event_type == "person.fall_detected":
        return "fall"
    if event_type.startswith("alert."):
        return event_type.split(".", 1)[1]
    if event_type in ("router.disconnected", "system.stopped"):
        return event_type.replace(".", "_")
    return None


# -- Home Assistant discovery ------------------------------------------------------------


def _device(site: SiteConfig, zone: str | None = None) -> dict[str, Any]:
    site_id = SAFE.sub("_", site.name.lower())
    if zone is None:
        return {"identifiers": [f"invispose_{site_id}"], "name": site.name,
                "manufacturer": "InvisPose", "model": "WiFi sensing", "sw_version": __version__}
    return {"identifiers": [f"invispose_{site_id}_{zone}"], "name": f"{site.name} {zone}",
            "manufacturer": "InvisPose", "model": "Zone", "via_device": f"invispose_{site_id}"}


ORIGIN = {"name": "InvisPose", "sw_version": __version__}


def discovery(site: SiteConfig, prefix: str, discovery_prefix: str
              ) -> list[tuple[str, dict[str, Any]]]:
    """(config topic, payload) of every entity: per zone an occupancy binary_sensor and
    a person-count sensor (one device per zone, via the site's device), a fall ``event``
    entity, a motion binary_sensor per router, and the system status sensor. Each carries
    ``default_entity_id`` and the older ``object_id``, ``origin`` and availability."""
    site_id = SAFE.sub("_", site.name.lower())
    availability = {"topic": f"{prefix}/availability", "payload_available": ONLINE,
                    "payload_not_available": OFFLINE}
    out: list[tuple[str, dict[str, Any]]] = []

    def entity(component: str, object_id: str, payload: dict[str, Any]) -> None:
        unique = f"invispose_{site_id}_{object_id}"
        out.append((f"{discovery_prefix}/{component}/{unique}/config", {
            **payload, "unique_id": unique, "object_id": f"invispose_{object_id}",
            "default_entity_id": f"{component}.invispose_{object_id}", "origin": ORIGIN,
            "availability": [availability],
        }))

    for zone in site.zones:
        occupancy, _, _ = topic(prefix, "zone_occupancy", zone_id=zone.id)
        device = _device(site, zone.id)
        entity("binary_sensor", f"{zone.id}_occupied", {
            "name": "Occupied", "device_class": "occupancy", "state_topic": occupancy,
            "value_template": "{{ 'ON' if value_json.occupancy_count > 0 else 'OFF' }}",
            "device": device,
        })
        entity("sensor", f"{zone.id}_persons", {
            "name": "Persons", "state_topic": occupancy, "unit_of_measurement": "persons",
            "state_class": "measurement",
            "value_template": "{{ value_json.occupancy_count }}", "device": device,
        })
    fall_topic, _, _ = topic(prefix, "system_alert", category="fall")
    entity("event", "fall", {
        "name": "Fall", "state_topic": fall_topic, "event_types": ["fall_detected"],
        "value_template": '{ "event_type": "fall_detected" }', "device": _device(site),
    })
    for router in site.routers:
        motion, _, _ = topic(prefix, "router_motion", router_id=router.id)
        entity("binary_sensor", f"{router.id}_motion", {
            "name": f"Motion {router.id}", "device_class": "motion", "state_topic": motion,
            "value_template": "{{ 'ON' if value_json.motion_present else 'OFF' }}",
            "device": _device(site),
        })
    status, _, _ = topic(prefix, "system_status")
    entity("sensor", "status", {
        "name": "Status", "state_topic": status, "value_template": "{{ value_json.status }}",
        "json_attributes_topic": status, "device": _device(site),
    })
    return out


def dumps(payload: Any) -> str:
    """Compact JSON for the wire."""
    return json.dumps(payload, separators=(",", ":"), default=str)
