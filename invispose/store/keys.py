"""API keys: each key's digest, scopes, tier, creation, last use and revocation.

Keys come from people (``invispose keys create``, ``POST /api/v1/auth/keys``): they are
written durably. Last-used times arrive in batches from the gateways and use the normal
commit (a lost one only makes a key look older).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from invispose.security import ApiKey, check_scopes
from invispose.store.base import StoreBase
from invispose.store.checks import check_id

_COLUMNS = "id, name, scopes, tier, created_us, last_used_us, revoked_us, digest"


def _seconds(t_us: int | None) -> float | None:
    return None if t_us is None else t_us / 1e6


def _key(row: tuple[Any, ...]) -> tuple[ApiKey, str]:
    key_id, name, scopes, tier, created, used, revoked, digest = row
    record = ApiKey(
        str(key_id), str(name), check_scopes(json.loads(scopes)), str(tier),
        created / 1e6, _seconds(used), _seconds(revoked),
    )
    return record, str(digest)


class ApiKeys(StoreBase):
    """Stored API keys."""

    def key_add(self, record: ApiKey, digest: str) -> None:
        """Keep a new key (its record and digest)."""
        check_id(record.id, "key id")
        with self._lock, self._transaction(durable=True) as conn:
            conn.execute(
                f"INSERT INTO api_keys ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (record.id, record.name, json.dumps(list(check_scopes(record.scopes))),
                 record.tier, round(record.created_s * 1e6), None, None, digest),
            )

    def keys(self, include_revoked: bool = True) -> list[ApiKey]:
        """Every key's record, oldest first (never the digests)."""
        return [record for record, _ in self.key_digests(include_revoked)]

    def key_digests(self, include_revoked: bool = True) -> list[tuple[ApiKey, str]]:
        """Every key with its digest, for the gateways' key rings."""
        where = "" if include_revoked else " WHERE revoked_us IS NULL"
        with self._lock:
            rows = self._query(f"SELECT {_COLUMNS} FROM api_keys{where} ORDER BY created_us, id")
        return [_key(row) for row in rows]

    def key_revoke(self, key_id: str, now_s: float) -> bool:
        """Revoke a key; False when there is no such active key."""
        check_id(key_id, "key id")
        with self._lock, self._transaction(durable=True) as conn:
            cursor = conn.execute(
                "UPDATE api_keys SET revoked_us = ? WHERE id = ? AND revoked_us IS NULL",
                (round(now_s * 1e6), key_id),
            )
            return cursor.rowcount == 1

    def keys_touch(self, used: Mapping[str, float]) -> None:
        """Record last-used times (keys unknown here are ignored)."""
        if not used:
            return
        with self._lock, self._transaction() as conn:
            conn.executemany(
                "UPDATE api_keys SET last_used_us = max(coalesce(last_used_us, 0), ?) "
                "WHERE id = ?",
                [(round(t * 1e6), key_id) for key_id, t in used.items()],
            )

    def keys_count(self) -> int:
        """How many keys were ever created (revoked ones too)."""
        with self._lock:
            return int(self._query("SELECT count(*) FROM api_keys")[0][0])
