"""Floor zones: who stands in which polygon, entries and exits, occupancy alerts.

A person's floor point (the ankle midpoint, or the hip centre when the ankles are not
seen) is tested against every zone polygon at once. A change of membership must hold for
``hold_s`` before it counts, so a person standing on a border does not flicker in and out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from invispose.config import ZoneConfig

F64 = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

ENTERED, LEFT, BREACH, HIGH_OCCUPANCY = "entered", "left", "breach", "high_occupancy"


class ZoneMap:
    """The polygons of a space, tested together with one vectorised ray cast."""

    def __init__(self, zones: list[ZoneConfig]) -> None:
        self.zones = list(zones)
        self.ids = [z.id for z in self.zones]
        starts: list[F64] = []
        owner: list[int] = []
        for index, zone in enumerate(self.zones):
            poly = np.asarray(zone.polygon_m, dtype=np.float64)  # (V, 2)
            starts.append(poly)
            owner.extend([index] * poly.shape[0])
        if starts:
            a = np.concatenate(starts)  # (E, 2) edge start points
            b = np.concatenate([np.roll(p, -1, axis=0) for p in starts])  # (E, 2) edge ends
        else:
            a = b = np.zeros((0, 2))
        self._ax, self._ay = a[:, 0], a[:, 1]  # (E,)
        dy = b[:, 1] - a[:, 1]
        self._flat = dy == 0.0  # horizontal edges never cross a horizontal ray
        self._slope = np.where(self._flat, 0.0, (b[:, 0] - a[:, 0]) / np.where(self._flat, 1, dy))
        self._by = b[:, 1]
        self._owner = np.zeros((len(owner), len(self.zones)))  # (E, Z) one-hot edge → zone
        self._owner[np.arange(len(owner)), owner] = 1.0

    def contains(self, points_m: F64) -> BoolArray:
        """Which zones (N, Z) contain each floor point (N, 2)."""
        if not self.zones or points_m.shape[0] == 0:
            return np.zeros((points_m.shape[0], len(self.zones)), dtype=bool)
        px = points_m[:, 0:1]  # (N, 1)
        py = points_m[:, 1:2]
        straddles = (self._ay > py) != (self._by > py)  # (N, E)
        x_cross = self._ax + (py - self._ay) * self._slope  # (N, E)
        crossings = (straddles & ~self._flat & (px < x_cross)).astype(np.float64) @ self._owner
        return np.asarray(crossings.astype(np.int64) % 2 == 1)


@dataclass(slots=True)
class ZoneChange:
    """Something that happened in a zone, before it becomes an event payload."""

    kind: str  # ENTERED, LEFT, BREACH or HIGH_OCCUPANCY
    zone: ZoneConfig
    person_id: str | None = None
    duration_s: float = 0.0  # time in the zone (LEFT) or above capacity (HIGH_OCCUPANCY)
    count: int = 0  # occupancy after the change
    reason: str | None = None  # LEFT: "moved" or "lost"


@dataclass(slots=True)
class _Alert:
    high_since_s: float | None = None
    last_alert_s: float | None = None


@dataclass(slots=True)
class ZoneMonitor:
    """Zone membership of every reported person, with entry/exit and occupancy alerts."""

    zones: list[ZoneConfig]
    hold_s: float = 0.25
    occupancy_repeat_s: float | None = 300.0  # repeat alert.high_occupancy while it lasts
    map: ZoneMap = field(init=False)
    inside: dict[str, dict[str, float]] = field(default_factory=dict)  # person → zone → since
    pending: dict[str, dict[str, float]] = field(default_factory=dict)  # person → zone → since
    alerts: dict[str, _Alert] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.map = ZoneMap(self.zones)
        self.alerts = {z.id: _Alert() for z in self.zones}

    def reconfigure(self, zone: ZoneConfig) -> None:
        """Replace (or add) one zone's configuration, live: who is inside stays inside
        until the next update tests them against the new polygon."""
        self.zones = [z for z in self.zones if z.id != zone.id] + [zone]
        self.map = ZoneMap(self.zones)
        self.alerts.setdefault(zone.id, _Alert())

    def update(
        self, person_ids: list[str], floor_m: F64, now_s: float, new_ids: set[str]
    ) -> list[ZoneChange]:
        """Test persons' floor points (N, 2); persons in ``new_ids`` take their zones at once."""
        changes: list[ZoneChange] = []
        if not self.zones:
            return changes
        inside_now = self.map.contains(floor_m).tolist()  # (N, Z)
        for pid, row in zip(person_ids, inside_now, strict=True):
            current = self.inside.setdefault(pid, {})
            pending = self.pending.setdefault(pid, {})
            for zone, is_in in zip(self.zones, row, strict=True):
                if is_in == (zone.id in current):
                    pending.pop(zone.id, None)
                    continue
                if pid not in new_ids:
                    since = pending.setdefault(zone.id, now_s)
                    if now_s - since + 1e-9 < self.hold_s:
                        continue
                    del pending[zone.id]
                if is_in:
                    current[zone.id] = now_s
                    changes.append(ZoneChange(ENTERED, zone, pid, count=self.count(zone.id)))
                    if zone.restricted:
                        changes.append(ZoneChange(BREACH, zone, pid, count=self.count(zone.id)))
                else:
                    entered = current.pop(zone.id)
                    changes.append(
                        ZoneChange(LEFT, zone, pid, now_s - entered, self.count(zone.id), "moved")
                    )
        changes.extend(self._occupancy_alerts(now_s))
        return changes

    def remove(self, person_id: str, now_s: float) -> list[ZoneChange]:
        """Forget a lost person: they leave every zone they were in."""
        self.pending.pop(person_id, None)
        current = self.inside.pop(person_id, {})
        return [
            ZoneChange(LEFT, zone, person_id, now_s - current[zone.id], self.count(zone.id), "lost")
            for zone in self.zones
            if zone.id in current
        ]

    def count(self, zone_id: str) -> int:
        """Persons in the zone now."""
        return sum(1 for zones in self.inside.values() if zone_id in zones)

    def zone_of(self, person_id: str) -> str | None:
        """The first zone (config order) the person is in."""
        current = self.inside.get(person_id)
        if current:
            for zone_id in self.map.ids:
                if zone_id in current:
                    return zone_id
        return None

    def occupancy(self) -> dict[str, dict[str, Any]]:
        """Per zone: count and persons now, capacity, whether it is restricted."""
        out: dict[str, dict[str, Any]] = {}
        for zone in self.zones:
            persons = sorted(p for p, zones in self.inside.items() if zone.id in zones)
            alert = self.alerts[zone.id]
            out[zone.id] = {
                "zone_id": zone.id,
                "name": zone.name,
                "occupancy_count": len(persons),
                "person_ids": persons,
                "max_occupancy": zone.max_occupancy,
                "restricted": zone.restricted,
                "polygon_m": [list(p) for p in zone.polygon_m],
                "over_capacity": alert.high_since_s is not None,
            }
        return out

    def _occupancy_alerts(self, now_s: float) -> list[ZoneChange]:
        changes: list[ZoneChange] = []
        for zone in self.zones:
            if zone.max_occupancy is None:
                continue
            alert = self.alerts[zone.id]
            count = self.count(zone.id)
            if count <= zone.max_occupancy:
                alert.high_since_s = alert.last_alert_s = None
                continue
            if alert.high_since_s is None:
                alert.high_since_s = alert.last_alert_s = now_s
                changes.append(ZoneChange(HIGH_OCCUPANCY, zone, count=count))
            elif (
                self.occupancy_repeat_s is not None
                and alert.last_alert_s is not None
                and now_s - alert.last_alert_s >= self.occupancy_repeat_s
            ):
                alert.last_alert_s = now_s
                changes.append(
                    ZoneChange(
                        HIGH_OCCUPANCY, zone, duration_s=now_s - alert.high_since_s, count=count
                    )
                )
        return changes

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready membership and alert state."""
        return {
            "inside": {p: dict(z) for p, z in self.inside.items()},
            "pending": {p: dict(z) for p, z in self.pending.items()},
            "alerts": {
                z: {"high_since_s": a.high_since_s, "last_alert_s": a.last_alert_s}
                for z, a in self.alerts.items()
            },
        }

    def load(self, data: dict[str, Any]) -> None:
        """Take the state written by ``to_dict`` (zones no longer configured are dropped)."""
        known = set(self.map.ids)
        self.inside = {
            p: {z: float(t) for z, t in zones.items() if z in known}
            for p, zones in data.get("inside", {}).items()
        }
        self.pending = {
            p: {z: float(t) for z, t in zones.items() if z in known}
            for p, zones in data.get("pending", {}).items()
        }
        for zone_id, alert in data.get("alerts", {}).items():
            if zone_id in self.alerts:
                self.alerts[zone_id] = _Alert(alert.get("high_since_s"), alert.get("last_alert_s"))
