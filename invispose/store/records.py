"""Small keyed records: router and zone configuration, tracker snapshots, event cursors."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any, Literal

from invispose.errors import InvisPoseError
from invispose.store.base import StoreBase
from invispose.store.checks import check_id, check_int
from invispose.store.codec import dumps

_ConfigTable = Literal["routers", "zones", "webhooks"]


def _now_us() -> int:
    return round(time.time() * 1_000_000)


def _as_dict(data: object, what: str) -> dict[str, Any]:
    if not isinstance(data, Mapping):
        raise InvisPoseError(f"{what} must be a mapping, got {type(data).__name__}")
    return dict(data)


class Records(StoreBase):
    """Router and zone configuration rows, tracker snapshots and named event cursors."""

    # -- configuration rows ----------------------------------------------------------------

    def _put_config(self, table: _ConfigTable, item_id: str, data: Mapping[str, Any]) -> None:
        check_id(item_id, f"{table[:-1]} id")
        text = dumps(_as_dict(data, f"{table[:-1]} {item_id!r}"), f"{table[:-1]} {item_id!r}")
        # Configuration changes come from people: keep them across power loss.
        with self._lock, self._transaction(durable=True) as conn:
            conn.execute(
                f"INSERT INTO {table} (id, data, updated_us) VALUES (?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET data = excluded.data, "
                "updated_us = excluded.updated_us",
                (item_id, text, _now_us()),
            )

    def _get_config(self, table: _ConfigTable, item_id: str) -> dict[str, Any] | None:
        check_id(item_id, f"{table[:-1]} id")
        with self._lock:
            rows = self._query(f"SELECT data FROM {table} WHERE id = ?", (item_id,))
        return dict(json.loads(rows[0][0])) if rows else None

    def _all_config(self, table: _ConfigTable) -> dict[str, dict[str, Any]]:
        with self._lock:
            rows = self._query(f"SELECT id, data FROM {table} ORDER BY id")
        return {item_id: json.loads(text) for item_id, text in rows}

    def _delete_config(self, table: _ConfigTable, item_id: str) -> bool:
        check_id(item_id, f"{table[:-1]} id")
        with self._lock, self._transaction(durable=True) as conn:
            return conn.execute(f"DELETE FROM {table} WHERE id = ?", (item_id,)).rowcount > 0

    def put_router(self, router_id: str, data: Mapping[str, Any]) -> None:
        """Insert or replace a router's configuration (any JSON-serialisable mapping)."""
        self._put_config("routers", router_id, data)

    def router(self, router_id: str) -> dict[str, Any] | None:
        """One router's configuration, or None."""
        return self._get_config("routers", router_id)

    def routers(self) -> dict[str, dict[str, Any]]:
        """All router configurations by id, in id order."""
        return self._all_config("routers")

    def delete_router(self, router_id: str) -> bool:
        """Remove a router's configuration; True if it existed."""
        return self._delete_config("routers", router_id)

    def put_zone(self, zone_id: str, data: Mapping[str, Any]) -> None:
        """Insert or replace a zone's configuration (any JSON-serialisable mapping)."""
        self._put_config("zones", zone_id, data)

    def zone(self, zone_id: str) -> dict[str, Any] | None:
        """One zone's configuration, or None."""
        return self._get_config("zones", zone_id)

    def zones(self) -> dict[str, dict[str, Any]]:
        """All zone configurations by id, in id order."""
        return self._all_config("zones")

    def delete_zone(self, zone_id: str) -> bool:
        """Remove a zone's configuration; True if it existed."""
        return self._delete_config("zones", zone_id)

    def put_webhook(self, webhook_id: str, data: Mapping[str, Any]) -> None:
        """Insert or replace a webhook endpoint registered through the API."""
        self._put_config("webhooks", webhook_id, data)

    def webhook(self, webhook_id: str) -> dict[str, Any] | None:
        """One registered webhook endpoint, or None."""
        return self._get_config("webhooks", webhook_id)

    def webhooks(self) -> dict[str, dict[str, Any]]:
        """Every registered webhook endpoint by id."""
        return self._all_config("webhooks")

    def delete_webhook(self, webhook_id: str) -> bool:
        """Remove a registered webhook endpoint; True if it existed."""
        return self._delete_config("webhooks", webhook_id)

    # -- tracker snapshots -----------------------------------------------------------------

    def save_snapshot(self, space_id: str, data: Mapping[str, Any]) -> None:
        """Replace a space's tracker snapshot (JSON-serialisable mapping)."""
        check_id(space_id, "space_id")
        text = dumps(_as_dict(data, "snapshot"), f"snapshot of {space_id!r}")
        with self._lock, self._transaction() as conn:
            conn.execute(
                "INSERT INTO snapshots (space_id, data, saved_us) VALUES (?, ?, ?) "
                "ON CONFLICT (space_id) DO UPDATE SET data = excluded.data, "
                "saved_us = excluded.saved_us",
                (space_id, text, _now_us()),
            )

    def load_snapshot(self, space_id: str) -> dict[str, Any] | None:
        """A space's last tracker snapshot, or None."""
        check_id(space_id, "space_id")
        with self._lock:
            rows = self._query("SELECT data FROM snapshots WHERE space_id = ?", (space_id,))
        return dict(json.loads(rows[0][0])) if rows else None

    # -- named event cursors ---------------------------------------------------------------

    def set_cursor(self, name: str, event_id: int) -> None:
        """Remember the last event id a consumer (e.g. the webhook dispatcher) handled."""
        check_id(name, "cursor name")
        check_int(event_id, "event_id", 0)
        with self._lock, self._transaction() as conn:
            conn.execute(
                "INSERT INTO cursors (name, event_id) VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET event_id = excluded.event_id",
                (name, event_id),
            )

    def cursor(self, name: str) -> int:
        """The event id stored under a cursor name (0 if never set)."""
        check_id(name, "cursor name")
        with self._lock:
            rows = self._query("SELECT event_id FROM cursors WHERE name = ?", (name,))
        return int(rows[0][0]) if rows else 0
