"""Stored API keys: digests only, revocation, last use, and the version 1 → 2 migration."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from invispose.keys import first_admin_key
from invispose.security import ADMIN_ALL, POSE_READ, key_digest, new_api_key
from invispose.store import SCHEMA_VERSION, Store


def test_keys_are_kept_as_digests_revoked_and_touched(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    record, key = new_api_key("ci", [POSE_READ], "premium")
    with Store(path) as store:
        store.key_add(record, key_digest(key))
        assert store.keys() == [record]
        store.keys_touch({record.id: 1_900_000_000.0, "000000000000": 1.0})
        assert store.keys()[0].last_used_s == 1_900_000_000.0
        store.keys_touch({record.id: 1_800_000_000.0})  # older news never goes back
        assert store.keys()[0].last_used_s == 1_900_000_000.0
        assert store.key_revoke(record.id, 2_000_000_000.0)
        assert not store.key_revoke(record.id, 2_000_000_001.0)
        assert store.keys(include_revoked=False) == []
        assert store.keys()[0].revoked_s == 2_000_000_000.0
    raw = b"".join(f.read_bytes() for f in tmp_path.glob("s.db*"))  # with the log, if any
    assert key.encode() not in raw and key_digest(key).encode() in raw


def test_a_version_1_store_gains_the_key_and_webhook_tables(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    Store(path).close()
    conn = sqlite3.connect(path)  # as version 1 left it
    conn.execute("DROP TABLE api_keys")
    conn.execute("DROP TABLE webhooks")
    conn.execute("UPDATE schema_version SET version = 1")
    conn.commit()
    conn.close()
    with Store(path) as store:
        record, key = new_api_key("after upgrade", [POSE_READ])
        store.key_add(record, key_digest(key))
        assert store.keys_count() == 1
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT max(version) FROM schema_version").fetchone()[0] \
        == SCHEMA_VERSION == 3
    assert conn.execute("SELECT count(*) FROM webhooks").fetchone()[0] == 0  # version 3
    conn.close()


def test_the_first_start_makes_one_admin_key_once(tmp_path: Path) -> None:
    path = tmp_path / "var" / "s.db"
    key = first_admin_key(path)
    assert key is not None and key.startswith("ivp_")
    assert first_admin_key(path) is None
    with Store(path) as store:
        (record,) = store.keys()
        assert record.scopes == (ADMIN_ALL,)
