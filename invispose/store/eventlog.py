"""The durable event log: ids assigned in order, on disk before the caller publishes."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from invispose.errors import InvisPoseError
from invispose.schemas import Event
from invispose.store.base import StoreBase
from invispose.store.checks import check_id, check_int
from invispose.store.codec import dumps, from_us, to_us

#: most events one events_since() call returns
MAX_EVENTS_LIMIT = 10_000


def _event(row: tuple[Any, ...]) -> Event:
    event_id, type_, t_us, space_id, data = row
    return Event.model_construct(
        id=event_id, type=type_, timestamp=from_us(t_us), space_id=space_id, data=json.loads(data)
    )


class EventLog(StoreBase):
    """Appends events durably and reads them back by id."""

    def append_events(self, events: Sequence[Event]) -> list[Event]:
        """Store events with new, increasing ids; return them as stored.

        All events are checked before anything is written; the commit is fsynced
        (``durable=True``) before this returns, so the returned events may be published
        at once. The returned copies are what :meth:`events_since` will read back
        (timestamps in UTC, payload after a JSON round trip).
        """
        rows: list[tuple[str, int, str | None, str]] = []
        for i, event in enumerate(events):
            if not isinstance(event, Event):
                raise InvisPoseError(f"events[{i}] must be an Event, got {type(event).__name__}")
            if event.id is not None:
                raise InvisPoseError(f"events[{i}] ({event.type}) already has id {event.id}")
            check_id(event.type, f"events[{i}].type")
            if event.space_id is not None:
                check_id(event.space_id, f"events[{i}].space_id")
            if not isinstance(event.data, dict):
                raise InvisPoseError(f"events[{i}].data must be a dict, got {event.data!r}")
            rows.append(
                (
                    event.type,
                    to_us(event.timestamp, f"events[{i}].timestamp"),
                    event.space_id,
                    dumps(event.data, f"events[{i}].data"),
                )
            )
        if not rows:
            return []
        ids: list[int] = []
        with self._lock, self._transaction(durable=True) as conn:
            for row in rows:
                cursor = conn.execute(
                    "INSERT INTO events (type, t_us, space_id, data) VALUES (?, ?, ?, ?)", row
                )
                if cursor.lastrowid is None:
                    raise InvisPoseError(f"store {self.path}: no id assigned to an event")
                ids.append(cursor.lastrowid)
        return [_event((event_id, *row)) for event_id, row in zip(ids, rows, strict=True)]

    def events_since(
        self,
        after_id: int,
        limit: int = 1000,
        types: Sequence[str] | None = None,
        space_id: str | None = None,
    ) -> list[Event]:
        """Events with id > after_id, oldest first, optionally of some types or one space."""
        check_int(after_id, "after_id", 0)
        check_int(limit, "limit", 0, MAX_EVENTS_LIMIT)
        where = ["id > ?"]
        params: list[Any] = [after_id]
        if types is not None:
            if isinstance(types, str):
                raise InvisPoseError("types must be a sequence of event names, not one string")
            names = [check_id(t, "event type") for t in types]
            if not names:
                return []
            where.append(f"type IN ({', '.join('?' * len(names))})")
            params.extend(names)
        if space_id is not None:
            where.append("space_id = ?")
            params.append(check_id(space_id, "space_id"))
        with self._lock:
            rows = self._query(
                "SELECT id, type, t_us, space_id, data FROM events "
                f"WHERE {' AND '.join(where)} ORDER BY id LIMIT ?",
                [*params, limit],
            )
        return [_event(row) for row in rows]

    def last_event_id(self) -> int:
        """The highest event id ever assigned (0 before the first event)."""
        with self._lock:
            rows = self._query("SELECT seq FROM sqlite_sequence WHERE name = 'events'")
        return int(rows[0][0]) if rows else 0
