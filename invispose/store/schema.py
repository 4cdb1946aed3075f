"""SQLite schema of the InvisPose store, and the guard that checks its version.

Times are integer microseconds since the Unix epoch (UTC) in columns named ``*_us``:
exact for every datetime a PoseFrame or Event can hold, and cheap to index.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from invispose.errors import InvisPoseError

#: version this code writes; bump it and add a step to MIGRATIONS when the schema changes
SCHEMA_VERSION = 3

#: API keys (version 2): the SHA-256 digest of each key, never the key
API_KEYS = (
    """CREATE TABLE api_keys (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        digest TEXT NOT NULL,
        scopes TEXT NOT NULL,
        tier TEXT NOT NULL,
        created_us INTEGER NOT NULL,
        last_used_us INTEGER,
        revoked_us INTEGER
    )""",
)

#: webhook endpoints registered through the API (version 3); the config's are not here
WEBHOOKS = (
    """CREATE TABLE webhooks (
        id TEXT PRIMARY KEY,
        data TEXT NOT NULL,
        updated_us INTEGER NOT NULL
    )""",
)

#: statements that take a database at version v (the key) to version v + 1
MIGRATIONS: dict[int, tuple[str, ...]] = {1: API_KEYS, 2: WEBHOOKS}

TABLES: tuple[str, ...] = (
    """CREATE TABLE schema_version (
        version INTEGER NOT NULL,
        applied_us INTEGER NOT NULL
    )""",
    # One row per PoseFrame; `id` is assigned by the store in write order.
    """CREATE TABLE pose_frames (
        id INTEGER PRIMARY KEY,
        space_id TEXT NOT NULL,
        t_us INTEGER NOT NULL,
        frame_id INTEGER NOT NULL,
        processing_time_ms REAL NOT NULL,
        keypoints BLOB NOT NULL,
        persons TEXT NOT NULL,
        metadata TEXT
    )""",
    # The rowid is implicitly the last index column: both indexes yield (t_us, id) order.
    "CREATE INDEX pose_frames_t ON pose_frames (t_us)",
    "CREATE INDEX pose_frames_space_t ON pose_frames (space_id, t_us)",
    # One row per person per frame, clustered by (person, time): person history,
    # trajectories and per-person pruning are index range scans.
    """CREATE TABLE pose_persons (
        person_id TEXT NOT NULL,
        t_us INTEGER NOT NULL,
        frame_rowid INTEGER NOT NULL,
        space_id TEXT NOT NULL,
        confidence REAL NOT NULL,
        activity TEXT,
        zone_id TEXT,
        x_m REAL,
        y_m REAL,
        z_m REAL,
        PRIMARY KEY (person_id, t_us, frame_rowid)
    ) WITHOUT ROWID""",
    """CREATE TABLE persons (
        person_id TEXT PRIMARY KEY,
        space_id TEXT NOT NULL,
        first_seen_us INTEGER NOT NULL,
        last_seen_us INTEGER NOT NULL,
        current_zone TEXT,
        confidence_sum REAL NOT NULL,
        frame_count INTEGER NOT NULL
    )""",
    "CREATE INDEX persons_last_seen ON persons (last_seen_us)",
    """CREATE TABLE person_activities (
        person_id TEXT NOT NULL,
        activity TEXT NOT NULL,
        first_seen_us INTEGER NOT NULL,
        last_seen_us INTEGER NOT NULL,
        frame_count INTEGER NOT NULL,
        PRIMARY KEY (person_id, activity)
    ) WITHOUT ROWID""",
    # AUTOINCREMENT: an id is never reused, even after rows are deleted, so a
    # subscriber's "last event id seen" stays meaningful forever.
    """CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        type TEXT NOT NULL,
        t_us INTEGER NOT NULL,
        space_id TEXT,
        data TEXT NOT NULL
    )""",
    """CREATE TABLE routers (
        id TEXT PRIMARY KEY,
        data TEXT NOT NULL,
        updated_us INTEGER NOT NULL
    )""",
    """CREATE TABLE zones (
        id TEXT PRIMARY KEY,
        data TEXT NOT NULL,
        updated_us INTEGER NOT NULL
    )""",
    """CREATE TABLE snapshots (
        space_id TEXT PRIMARY KEY,
        data TEXT NOT NULL,
        saved_us INTEGER NOT NULL
    )""",
    """CREATE TABLE cursors (
        name TEXT PRIMARY KEY,
        event_id INTEGER NOT NULL
    )""",
    """CREATE TABLE webhook_outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        webhook_id TEXT NOT NULL,
        event_id INTEGER NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending'
            CHECK (state IN ('pending', 'delivered', 'failed')),
        attempts INTEGER NOT NULL DEFAULT 0,
        created_us INTEGER NOT NULL,
        next_attempt_us INTEGER NOT NULL,
        updated_us INTEGER NOT NULL,
        last_status INTEGER,
        last_error TEXT,
        UNIQUE (webhook_id, event_id)
    )""",
    """CREATE INDEX webhook_outbox_due ON webhook_outbox (next_attempt_us, id)
        WHERE state = 'pending'""",
    "CREATE INDEX webhook_outbox_updated ON webhook_outbox (updated_us)",
    """CREATE TABLE webhook_deliveries (
        id INTEGER PRIMARY KEY,
        outbox_id INTEGER NOT NULL,
        webhook_id TEXT NOT NULL,
        event_id INTEGER NOT NULL,
        attempt INTEGER NOT NULL,
        at_us INTEGER NOT NULL,
        delivered INTEGER NOT NULL,
        status_code INTEGER,
        error TEXT,
        duration_ms REAL
    )""",
    "CREATE INDEX webhook_deliveries_webhook ON webhook_deliveries (webhook_id, id)",
    "CREATE INDEX webhook_deliveries_at ON webhook_deliveries (at_us)",
    *API_KEYS,
    *WEBHOOKS,
)


def _table_names(conn: sqlite3.Connection) -> set[str]:
    rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return {str(r[0]) for r in rows} - {"sqlite_sequence"}


def read_version(conn: sqlite3.Connection, path: Path) -> int | None:
    """The schema version of an open database; None when it holds no tables at all."""
    tables = _table_names(conn)
    if not tables:
        return None
    if "schema_version" not in tables:
        raise InvisPoseError(
            f"{path} is an SQLite database but not an InvisPose store "
            f"(no schema_version table; tables: {', '.join(sorted(tables))})"
        )
    row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
    if row is None or row[0] is None:
        raise InvisPoseError(f"{path}: schema_version table is empty")
    return int(row[0])


def check_version(version: int | None, path: Path) -> None:
    """Refuse a database written by a newer InvisPose, or one that is not a store."""
    if version is None:
        raise InvisPoseError(f"{path} holds no InvisPose store (empty database)")
    if version > SCHEMA_VERSION:
        raise InvisPoseError(
            f"{path} has store schema version {version}, newer than version "
            f"{SCHEMA_VERSION} that this InvisPose understands; upgrade InvisPose "
            "or point store.path at another file"
        )


def ensure_schema(conn: sqlite3.Connection, path: Path) -> int:
    """Create the schema in an empty database or migrate an older one; return the version.

    The connection must be in autocommit mode (``isolation_level=None``); creation and
    each migration step run in one transaction, so a crash leaves the old version intact.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = read_version(conn, path)
        if version is None:
            for statement in TABLES:
                conn.execute(statement)
            _stamp(conn, SCHEMA_VERSION)
            version = SCHEMA_VERSION
        check_version(version, path)
        while version < SCHEMA_VERSION:
            steps = MIGRATIONS.get(version)
            if steps is None:
                raise InvisPoseError(f"{path}: no migration from store schema version {version}")
            for statement in steps:
                conn.execute(statement)
            version += 1
            _stamp(conn, version)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return version


def _stamp(conn: sqlite3.Connection, version: int) -> None:
    conn.execute(
        "INSERT INTO schema_version (version, applied_us) VALUES (?, ?)",
        (version, round(time.time() * 1_000_000)),
    )
