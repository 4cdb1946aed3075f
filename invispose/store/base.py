"""The store's connection: opening, pragmas, transactions and error translation.

Durability in WAL mode. With ``synchronous=NORMAL`` a commit appends to the
write-ahead log without fsync: the data survives a crash of the process (the log is in
the OS page cache) but the last commits may vanish on power loss or a kernel crash.
With ``synchronous=FULL`` SQLite fsyncs the log at the end of each commit, and because
the log is written sequentially that fsync also covers every commit before it. Pose
history is written with NORMAL (losing the last fraction of a second of poses on power
loss is acceptable, fsync ten times a second is not); transactions that must survive
power loss — events, the webhook outbox, configuration rows — switch the connection to
FULL for their own commit (``durable=True``), so they are on disk before the call
returns and the caller may publish them. A checkpoint is not needed for durability: a
WAL frame that has been fsynced is replayed into the database on the next open.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

from invispose.errors import InvisPoseError, StoreWriteError
from invispose.store.schema import check_version, ensure_schema, read_version

logger = logging.getLogger(__name__)

BUSY_TIMEOUT_S = 5.0  # wait this long for another connection's write lock
WAL_SIZE_LIMIT_BYTES = 64 * 1024 * 1024  # truncate the log to this after checkpoints


def _fsync_dir(path: Path) -> None:
    """Make a newly created file's directory entry durable (POSIX only)."""
    if os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class StoreBase:
    """Owns one SQLite connection and the lock that serialises calls on it."""

    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = self._connect()

    def _connect(self) -> sqlite3.Connection:
        try:
            if self.readonly:
                return self._connect_readonly()
            return self._connect_writer()
        except sqlite3.Error as exc:
            raise InvisPoseError(f"cannot open store {self.path}: {exc}") from exc

    def _connect_writer(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InvisPoseError(
                f"cannot create store directory {self.path.parent}: {exc}"
            ) from exc
        if self.path.is_dir():
            raise InvisPoseError(f"store path {self.path} is a directory")
        created = not self.path.exists()
        conn = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise InvisPoseError(f"store {self.path}: cannot switch to WAL (got {mode})")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT_BYTES}")
            ensure_schema(conn, self.path)
        except BaseException:
            conn.close()
            raise
        if created:
            _fsync_dir(self.path.parent)
            logger.info("created store %s", self.path)
        return conn

    def _connect_readonly(self) -> sqlite3.Connection:
        if not self.path.is_file():
            raise InvisPoseError(f"store {self.path} does not exist")
        uri = f"{self.path.resolve().as_uri()}?mode=ro"
        conn = sqlite3.connect(
            uri, uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
        try:
            conn.execute("PRAGMA query_only=1")
            check_version(read_version(conn, self.path), self.path)
        except BaseException:
            conn.close()
            raise
        return conn

    # -- lifecycle -----------------------------------------------------------------------

    def _before_close(self) -> None:
        """Hook for subclasses: write what is pending before the connection closes."""

    def close(self, *, flush: bool = True) -> None:
        """Close the connection; with ``flush`` first write what is buffered."""
        with self._lock:
            if self._conn is None:
                return
            try:
                if flush and not self.readonly:
                    self._before_close()
            finally:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> StoreBase:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- helpers for the query modules ---------------------------------------------------

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreWriteError(f"store {self.path} is closed")
        return self._conn

    def _query(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> list[Any]:
        """Run a read query and return all rows, translating SQLite errors."""
        try:
            return self._db().execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise InvisPoseError(f"store {self.path}: query failed: {exc}") from exc

    @contextmanager
    def _transaction(self, *, durable: bool = False) -> Iterator[sqlite3.Connection]:
        """One write transaction; ``durable`` fsyncs the log at commit (see module doc)."""
        if self.readonly:
            raise InvisPoseError(f"store {self.path} is open read-only")
        conn = self._db()
        try:
            if durable:
                conn.execute("PRAGMA synchronous=FULL")
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StoreWriteError(f"store {self.path}: cannot begin a write: {exc}") from exc
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    logger.exception("rollback failed on store %s", self.path)
            if isinstance(exc, sqlite3.Error | OverflowError | UnicodeError):
                raise StoreWriteError(f"store {self.path}: write failed: {exc}") from exc
            raise
        finally:
            if durable:
                try:
                    conn.execute("PRAGMA synchronous=NORMAL")
                except sqlite3.Error:
                    logger.exception("cannot restore synchronous=NORMAL on %s", self.path)
