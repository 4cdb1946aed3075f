"""The webhook outbox: deliveries owed, their retry schedule, and the delivery log.

A row is ``pending`` until a delivery succeeds (``delivered``) or the dispatcher gives
up (``failed``). Rows are added durably, so an event's deliveries survive power loss;
marks use the normal commit (a lost mark means one more delivery, which receivers must
tolerate anyway: delivery is at least once).
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterable
from typing import Any

from invispose.errors import InvisPoseError
from invispose.schemas import Event
from invispose.store.base import StoreBase
from invispose.store.checks import check_id, check_int, check_text
from invispose.store.codec import from_us, to_us

MAX_OUTBOX_LIMIT = 10_000
_OUTBOX_COLUMNS = (
    "o.id, o.webhook_id, o.event_id, o.state, o.attempts, o.created_us, o.next_attempt_us, "
    "o.updated_us, o.last_status, o.last_error"
)


def _when_us(value: dt.datetime | float | None, what: str) -> int:
    return to_us(time.time() if value is None else value, what)


def _outbox_dict(row: tuple[Any, ...]) -> dict[str, Any]:
    oid, webhook_id, event_id, state, attempts, created, next_at, updated, status, error = row
    return {
        "id": oid,
        "webhook_id": webhook_id,
        "event_id": event_id,
        "state": state,
        "attempts": attempts,
        "created_at": created / 1e6,
        "next_attempt_at": next_at / 1e6,
        "updated_at": updated / 1e6,
        "last_status": status,
        "last_error": error,
    }


class Outbox(StoreBase):
    """Webhook deliveries owed and the log of attempts (times are Unix seconds)."""

    def outbox_add(
        self, webhook_id: str, event_id: int, *, now: dt.datetime | float | None = None
    ) -> int:
        """Owe one delivery of an event to a webhook, due now; return the outbox id.

        Adding the same (webhook, event) twice returns the existing row's id.
        """
        return self.outbox_add_many([(webhook_id, event_id)], now=now)[0]

    def outbox_add_many(
        self, items: Iterable[tuple[str, int]], *, now: dt.datetime | float | None = None
    ) -> list[int]:
        """Owe several deliveries in one durable transaction; return their outbox ids."""
        pairs = [(check_id(w, "webhook_id"), check_int(e, "event_id", 1)) for w, e in list(items)]
        now_us = _when_us(now, "now")
        ids: list[int] = []
        if not pairs:
            return ids
        with self._lock, self._transaction(durable=True) as conn:
            for webhook_id, event_id in pairs:
                found = conn.execute("SELECT 1 FROM events WHERE id = ?", (event_id,)).fetchone()
                if found is None:
                    raise InvisPoseError(f"outbox: event {event_id} is not stored")
                conn.execute(
                    "INSERT INTO webhook_outbox (webhook_id, event_id, created_us, "
                    "next_attempt_us, updated_us) VALUES (?, ?, ?, ?, ?) "
                    "ON CONFLICT (webhook_id, event_id) DO NOTHING",
                    (webhook_id, event_id, now_us, now_us, now_us),
                )
                row = conn.execute(
                    "SELECT id FROM webhook_outbox WHERE webhook_id = ? AND event_id = ?",
                    (webhook_id, event_id),
                ).fetchone()
                ids.append(int(row[0]))
        return ids

    def outbox_due(
        self, now: dt.datetime | float | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Pending deliveries due at ``now``, soonest first, each with its ``event``."""
        return self._pending("o.state = 'pending'", now, limit)

    def outbox_heads(
        self, now: dt.datetime | float | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Each webhook's oldest pending delivery, when it is due: delivering only these
        keeps every endpoint's events in order (a later event waits for an earlier one's
        retries)."""
        return self._pending(
            "o.id IN (SELECT min(id) FROM webhook_outbox WHERE state = 'pending' "
            "GROUP BY webhook_id)", now, limit)

    def _pending(
        self, which: str, now: dt.datetime | float | None, limit: int
    ) -> list[dict[str, Any]]:
        check_int(limit, "limit", 0, MAX_OUTBOX_LIMIT)
        now_us = _when_us(now, "now")
        with self._lock:
            rows = self._query(
                f"SELECT {_OUTBOX_COLUMNS}, e.type, e.t_us, e.space_id, e.data "
                "FROM webhook_outbox o JOIN events e ON e.id = o.event_id "
                f"WHERE {which} AND o.next_attempt_us <= ? "
                "ORDER BY o.next_attempt_us, o.id LIMIT ?",
                (now_us, limit),
            )
        return [self._with_event(row) for row in rows]

    @staticmethod
    def _with_event(row: tuple[Any, ...]) -> dict[str, Any]:
        item = _outbox_dict(row[:10])
        type_, t_us, space_id, data = row[10:]
        item["event"] = Event.model_construct(
            id=row[2], type=type_, timestamp=from_us(t_us), space_id=space_id,
            data=json.loads(data),
        )  # fmt: skip
        return item

    def outbox_get(self, outbox_id: int) -> dict[str, Any] | None:
        """One outbox row (without the event), or None."""
        check_int(outbox_id, "outbox_id", 1)
        with self._lock:
            rows = self._query(
                f"SELECT {_OUTBOX_COLUMNS} FROM webhook_outbox o WHERE o.id = ?", (outbox_id,)
            )
        return _outbox_dict(rows[0]) if rows else None

    def outbox_mark(
        self,
        outbox_id: int,
        delivered: bool,
        *,
        status_code: int | None = None,
        error: str | None = None,
        duration_ms: float | None = None,
        next_attempt_at: dt.datetime | float | None = None,
        now: dt.datetime | float | None = None,
    ) -> dict[str, Any]:
        """Record one delivery attempt and log it; return the updated row.

        Delivered rows are done. A failed attempt with ``next_attempt_at`` stays pending
        until then; without it the row is given up (``failed``).
        """
        check_int(outbox_id, "outbox_id", 1)
        if not isinstance(delivered, bool):
            raise InvisPoseError(f"delivered must be a bool, got {delivered!r}")
        if status_code is not None:
            check_int(status_code, "status_code", 0, 999)
        check_text(error, "error", optional=True)
        if duration_ms is not None and (
            isinstance(duration_ms, bool) or not isinstance(duration_ms, int | float)
        ):
            raise InvisPoseError(f"duration_ms must be a number, got {duration_ms!r}")
        now_us = _when_us(now, "now")
        if delivered:
            state, next_us = "delivered", None
        elif next_attempt_at is None:
            state, next_us = "failed", None
        else:
            state, next_us = "pending", to_us(next_attempt_at, "next_attempt_at")
        with self._lock, self._transaction() as conn:
            row = conn.execute(
                "SELECT webhook_id, event_id, attempts, state FROM webhook_outbox WHERE id = ?",
                (outbox_id,),
            ).fetchone()
            if row is None:
                raise InvisPoseError(f"outbox row {outbox_id} does not exist")
            webhook_id, event_id, attempts, old_state = row
            if old_state != "pending":
                raise InvisPoseError(f"outbox row {outbox_id} is already {old_state}")
            conn.execute(
                "UPDATE webhook_outbox SET state = ?, attempts = ?, "
                "next_attempt_us = coalesce(?, next_attempt_us), updated_us = ?, "
                "last_status = ?, last_error = ? WHERE id = ?",
                (state, attempts + 1, next_us, now_us, status_code, error, outbox_id),
            )
            conn.execute(
                "INSERT INTO webhook_deliveries (outbox_id, webhook_id, event_id, attempt, "
                "at_us, delivered, status_code, error, duration_ms) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (outbox_id, webhook_id, event_id, attempts + 1, now_us, int(delivered),
                 status_code, error, duration_ms),
            )  # fmt: skip
        updated = self.outbox_get(outbox_id)
        if updated is None:  # pragma: no cover - the row was just updated under the lock
            raise InvisPoseError(f"outbox row {outbox_id} vanished")
        return updated

    def outbox_redeliver(self, delivery_id: int, *, now: dt.datetime | float | None = None
                         ) -> int | None:
        """Owe again the delivery a log entry belongs to, due now (delivered or given up
        before); its outbox id, or None when there is no such entry."""
        check_int(delivery_id, "delivery_id", 1)
        now_us = _when_us(now, "now")
        with self._lock, self._transaction(durable=True) as conn:
            row = conn.execute("SELECT outbox_id FROM webhook_deliveries WHERE id = ?",
                               (delivery_id,)).fetchone()
            if row is None:
                return None
            conn.execute(
                "UPDATE webhook_outbox SET state = 'pending', next_attempt_us = ?, "
                "updated_us = ? WHERE id = ?", (now_us, now_us, row[0]),
            )
        return int(row[0])

    def deliveries(
        self, webhook_id: str | None = None, limit: int = 100, before_id: int | None = None
    ) -> list[dict[str, Any]]:
        """The delivery log, newest first (page with ``before_id``)."""
        check_int(limit, "limit", 0, MAX_OUTBOX_LIMIT)
        where: list[str] = []
        params: list[Any] = []
        if webhook_id is not None:
            where.append("webhook_id = ?")
            params.append(check_id(webhook_id, "webhook_id"))
        if before_id is not None:
            where.append("id < ?")
            params.append(check_int(before_id, "before_id", 1))
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        with self._lock:
            rows = self._query(
                "SELECT id, outbox_id, webhook_id, event_id, attempt, at_us, delivered, "
                f"status_code, error, duration_ms FROM webhook_deliveries {clause} "
                "ORDER BY id DESC LIMIT ?",
                [*params, limit],
            )
        keys = ("id", "outbox_id", "webhook_id", "event_id", "attempt", "at", "delivered",
                "status_code", "error", "duration_ms")  # fmt: skip
        out = []
        for row in rows:
            item = dict(zip(keys, row, strict=True))
            item["at"] = row[5] / 1e6
            item["delivered"] = bool(row[6])
            out.append(item)
        return out
