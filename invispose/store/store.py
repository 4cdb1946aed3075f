"""Store: the InvisPose SQLite database (history, persons, events, config, outbox).

One writer owns a database file (the store actor runs it on its own thread); any
number of readers may open the same file read-only and see every committed write
(WAL mode). Every method is synchronous and serialised by one lock.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from invispose.config import StoreConfig
from invispose.errors import InvisPoseError
from invispose.store.checks import check_int
from invispose.store.codec import EncodedFrame
from invispose.store.eventlog import EventLog
from invispose.store.history import PoseHistory
from invispose.store.keys import ApiKeys
from invispose.store.outbox import Outbox
from invispose.store.persons import PersonQueries
from invispose.store.records import Records

#: frames buffered before add_pose_frame writes them itself (the actor also flushes
#: on a timer, at most every 100 ms: 8 spaces × 20 frames/s is 16 frames a flush)
DEFAULT_MAX_BUFFER_FRAMES = 256


class Store(PoseHistory, PersonQueries, EventLog, Records, Outbox, ApiKeys):
    """The InvisPose database: pose history, persons, events, config rows, outbox, API keys."""

    def __init__(
        self,
        path: Path,
        *,
        history_days: float = 7.0,
        max_buffer_frames: int = DEFAULT_MAX_BUFFER_FRAMES,
        readonly: bool = False,
    ) -> None:
        if isinstance(history_days, bool) or not isinstance(history_days, int | float):
            raise InvisPoseError(f"history_days must be a number, got {history_days!r}")
        if not math.isfinite(history_days) or history_days <= 0:
            raise InvisPoseError(f"history_days must be > 0, got {history_days!r}")
        self.history_days = float(history_days)
        self.max_buffer_frames = check_int(max_buffer_frames, "max_buffer_frames", 1)
        self.frames_written = 0
        self.frames_dropped = 0
        self._buffer: list[tuple[str, EncodedFrame]] = []
        self._auto_flush_at = self.max_buffer_frames
        super().__init__(Path(path), readonly=readonly)

    @classmethod
    def from_config(cls, config: StoreConfig) -> Store:
        """Open (or create) the database a StoreConfig names."""
        return cls(config.path, history_days=config.history_days)

    @classmethod
    def open_readonly(cls, path: Path) -> Store:
        """Open an existing database for reading only (safe beside a running writer)."""
        return cls(path, readonly=True)

    def __enter__(self) -> Store:
        return self

    def stats(self) -> dict[str, Any]:
        """Counters for metrics: frames written, dropped and still buffered."""
        return {
            "frames_written": self.frames_written,
            "frames_dropped": self.frames_dropped,
            "frames_buffered": self.buffered_frames,
            "last_event_id": self.last_event_id(),
        }
