"""Person queries: the per-person aggregate (seed's person details) and trajectories."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from invispose.errors import InvisPoseError
from invispose.store.base import StoreBase
from invispose.store.checks import check_id, check_int
from invispose.store.codec import from_us, to_us

#: trajectory points returned when the caller does not say
DEFAULT_TRAJECTORY_POINTS = 1000
MAX_TRAJECTORY_POINTS = 100_000
_PERSON_COLUMNS = (
    "person_id, space_id, first_seen_us, last_seen_us, current_zone, confidence_sum, frame_count"
)
_POINT_COLUMNS = "t_us, x_m, y_m, z_m, zone_id"


def _person_dict(row: tuple[Any, ...], activities: list[str]) -> dict[str, Any]:
    pid, space_id, first_us, last_us, zone, conf_sum, frames = row
    return {
        "person_id": pid,
        "first_seen": from_us(first_us),
        "last_seen": from_us(last_us),
        "current_zone": zone,
        "average_confidence": conf_sum / frames if frames else 0.0,
        "detected_activities": activities,
        "space_id": space_id,
    }


def _point(row: tuple[Any, ...]) -> dict[str, Any]:
    t_us, x, y, z, zone = row
    return {"timestamp": from_us(t_us), "x": x, "y": y, "z": z, "zone_id": zone}


class PersonQueries(StoreBase):
    """Reads of the persons aggregate and of per-person positions over time."""

    def person(self, person_id: str) -> dict[str, Any] | None:
        """The seed's person details (plus ``space_id``), or None for an unknown person.

        Keys: person_id, first_seen, last_seen (UTC datetimes), current_zone,
        average_confidence (mean of the person's confidence over all stored frames),
        detected_activities (names in the order first seen), space_id.
        """
        check_id(person_id, "person_id")
        with self._lock:
            rows = self._query(
                f"SELECT {_PERSON_COLUMNS} FROM persons WHERE person_id = ?", (person_id,)
            )
            if not rows:
                return None
            acts = self._query(
                "SELECT activity FROM person_activities WHERE person_id = ? "
                "ORDER BY first_seen_us, activity",
                (person_id,),
            )
        return _person_dict(rows[0], [a for (a,) in acts])

    def persons(
        self,
        active_within_s: float | None = None,
        *,
        now: dt.datetime | float | None = None,
        space_id: str | None = None,
    ) -> list[dict[str, Any]]:
        """All known persons, most recently seen first, as :meth:`person` shapes them.

        ``active_within_s`` keeps those last seen at most that long before ``now``.
        """
        where: list[str] = []
        params: list[Any] = []
        if active_within_s is not None:
            if isinstance(active_within_s, bool) or not isinstance(active_within_s, int | float):
                raise InvisPoseError(f"active_within_s must be seconds, got {active_within_s!r}")
            now_us = to_us(time.time() if now is None else now, "now")
            where.append("p.last_seen_us >= ?")
            params.append(now_us - round(active_within_s * 1_000_000))
        if space_id is not None:
            where.append("p.space_id = ?")
            params.append(check_id(space_id, "space_id"))
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        with self._lock:
            rows = self._query(
                f"SELECT {_PERSON_COLUMNS} FROM persons p {clause} "
                "ORDER BY p.last_seen_us DESC, p.person_id",
                params,
            )
            acts = self._query(
                f"SELECT a.person_id, a.activity FROM person_activities a "
                f"JOIN persons p ON p.person_id = a.person_id {clause} "
                "ORDER BY a.first_seen_us, a.activity",
                params,
            )
        by_person: dict[str, list[str]] = {}
        for pid, activity in acts:
            by_person.setdefault(pid, []).append(activity)
        return [_person_dict(row, by_person.get(row[0], [])) for row in rows]

    def trajectory(
        self,
        person_id: str,
        start: dt.datetime | float | None = None,
        end: dt.datetime | float | None = None,
        max_points: int = DEFAULT_TRAJECTORY_POINTS,
    ) -> list[dict[str, Any]]:
        """Hip-centre positions of a person over time, oldest first, at most max_points.

        Each point: timestamp (UTC datetime), x, y, z (room metres), zone_id. When the
        range holds more points, the time span is cut into max_points equal buckets and
        the first point of each bucket is kept: the cost is max_points index seeks,
        however long the range.
        """
        check_id(person_id, "person_id")
        check_int(max_points, "max_points", 1, MAX_TRAJECTORY_POINTS)
        start_us = to_us(start, "start") if start is not None else -(2**62)
        end_us = to_us(end, "end") if end is not None else 2**62
        base = (
            f"SELECT {_POINT_COLUMNS} FROM pose_persons WHERE person_id = ? "
            "AND t_us >= ? AND t_us <= ? AND x_m IS NOT NULL ORDER BY t_us, frame_rowid"
        )
        with self._lock:
            rows = self._query(f"{base} LIMIT ?", (person_id, start_us, end_us, max_points + 1))
            if len(rows) <= max_points:
                return [_point(r) for r in rows]
            first_us = int(rows[0][0])
            last = self._query(
                "SELECT max(t_us) FROM pose_persons WHERE person_id = ? "
                "AND t_us >= ? AND t_us <= ? AND x_m IS NOT NULL",
                (person_id, start_us, end_us),
            )
            span_us = int(last[0][0]) - first_us
            bucket_us = span_us / max_points
            points = [_point(rows[0])]
            k, t_us = 1, first_us  # next bucket, time of the last point kept
            seek = f"{base} LIMIT 1"
            while len(points) < max_points and k < max_points:
                edge = max(first_us + int(k * bucket_us), t_us + 1)
                hit = self._query(seek, (person_id, edge, end_us))
                if not hit:
                    break
                t_us = int(hit[0][0])
                points.append(_point(hit[0]))
                k = max(k + 1, int((t_us - first_us) / bucket_us) + 1) if bucket_us else k + 1
        return points
