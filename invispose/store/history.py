"""Pose history: buffered frame writes, the persons aggregate, history queries, retention."""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from invispose.errors import InvisPoseError
from invispose.schemas import PoseFrame
from invispose.store.base import StoreBase
from invispose.store.checks import check_id, check_int
from invispose.store.codec import (
    EncodedFrame,
    decode_frame,
    decode_frame_dict,
    encode_frame,
    to_us,
)

logger = logging.getLogger(__name__)

#: most frames one history() call returns (the API's `limit` bound)
MAX_HISTORY_LIMIT = 1000
#: a failing database may hold back at most this many buffers' worth of frames
MAX_BUFFERS_HELD = 20
_US_PER_DAY = 86_400_000_000

_INSERT_FRAME = """INSERT INTO pose_frames
    (id, space_id, t_us, frame_id, processing_time_ms, keypoints, persons, metadata)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?)"""
_INSERT_PERSON_ROW = """INSERT INTO pose_persons
    (person_id, t_us, frame_rowid, space_id, confidence, activity, zone_id, x_m, y_m, z_m)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"""
# In DO UPDATE, bare column names are the stored row's values before the update.
_UPSERT_PERSON = """INSERT INTO persons
    (person_id, space_id, first_seen_us, last_seen_us, current_zone, confidence_sum,
     frame_count)
    VALUES (?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (person_id) DO UPDATE SET
        space_id = CASE WHEN excluded.last_seen_us >= last_seen_us
                        THEN excluded.space_id ELSE space_id END,
        current_zone = CASE WHEN excluded.last_seen_us >= last_seen_us
                            THEN excluded.current_zone ELSE current_zone END,
        first_seen_us = min(first_seen_us, excluded.first_seen_us),
        last_seen_us = max(last_seen_us, excluded.last_seen_us),
        confidence_sum = confidence_sum + excluded.confidence_sum,
        frame_count = frame_count + excluded.frame_count"""
_UPSERT_ACTIVITY = """INSERT INTO person_activities
    (person_id, activity, first_seen_us, last_seen_us, frame_count) VALUES (?, ?, ?, ?, ?)
    ON CONFLICT (person_id, activity) DO UPDATE SET
        first_seen_us = min(first_seen_us, excluded.first_seen_us),
        last_seen_us = max(last_seen_us, excluded.last_seen_us),
        frame_count = frame_count + excluded.frame_count"""
_FRAME_COLUMNS = "f.t_us, f.frame_id, f.processing_time_ms, f.keypoints, f.persons, f.metadata"


@dataclass(slots=True)
class _PersonAgg:
    """What one flush adds to a person's aggregate row."""

    space_id: str
    first_us: int
    last_us: int
    zone_id: str | None
    confidence_sum: float = 0.0
    frames: int = 0
    activities: dict[str, list[int]] = field(default_factory=dict)  # name -> [first, last, n]

    def add(self, space_id: str, t_us: int, zone_id: str | None, conf: float) -> None:
        self.first_us = min(self.first_us, t_us)
        if t_us >= self.last_us:
            self.last_us, self.zone_id, self.space_id = t_us, zone_id, space_id
        self.confidence_sum += conf
        self.frames += 1


class PoseHistory(StoreBase):
    """Writes PoseFrames in batches and answers history queries."""

    history_days: float
    max_buffer_frames: int
    frames_written: int
    frames_dropped: int
    _buffer: list[tuple[str, EncodedFrame]]
    _auto_flush_at: int  # buffer length at which add_pose_frame flushes

    def add_pose_frame(self, space_id: str, frame: PoseFrame) -> None:
        """Encode a frame and buffer it; flush when the buffer is full.

        Bad frames raise InvisPoseError here, so a flush never meets bad data. A flush
        triggered by a full buffer that fails is logged, not raised (the frame was
        accepted), and tried again once another buffer's worth has arrived; past
        MAX_BUFFERS_HELD buffers the oldest frames are dropped (counted).
        """
        check_id(space_id, "space_id")
        encoded = encode_frame(frame)
        with self._lock:
            if self.readonly:
                raise InvisPoseError(f"store {self.path} is open read-only")
            self._buffer.append((space_id, encoded))
            if len(self._buffer) < self._auto_flush_at:
                return
            try:
                self.flush()
            except InvisPoseError as exc:
                logger.warning(
                    "pose history flush failed, %d frames held: %s", len(self._buffer), exc
                )
                self._auto_flush_at = len(self._buffer) + self.max_buffer_frames
                excess = len(self._buffer) - MAX_BUFFERS_HELD * self.max_buffer_frames
                if excess > 0:
                    del self._buffer[:excess]
                    self.frames_dropped += excess

    @property
    def buffered_frames(self) -> int:
        """Frames accepted but not yet written."""
        return len(self._buffer)

    def flush(self) -> int:
        """Write the buffered frames in one transaction; return how many were written."""
        with self._lock:
            batch = self._buffer
            if not batch:
                return 0
            with self._transaction() as conn:
                row = conn.execute("SELECT max(id) FROM pose_frames").fetchone()
                next_id = int(row[0] or 0) + 1
                frames = []
                person_rows = []
                aggs: dict[str, _PersonAgg] = {}
                for rowid, (space_id, enc) in enumerate(batch, start=next_id):
                    frames.append(
                        (rowid, space_id, enc.t_us, enc.frame_id, enc.processing_time_ms,
                         enc.keypoints, enc.persons, enc.metadata)
                    )  # fmt: skip
                    for p in enc.person_rows:
                        x, y, z = p.hip_m if p.hip_m is not None else (None, None, None)
                        person_rows.append(
                            (p.person_id, enc.t_us, rowid, space_id, p.confidence,
                             p.activity, p.zone_id, x, y, z)
                        )  # fmt: skip
                        agg = aggs.get(p.person_id)
                        if agg is None:
                            agg = aggs[p.person_id] = _PersonAgg(
                                space_id, enc.t_us, enc.t_us, p.zone_id
                            )
                        agg.add(space_id, enc.t_us, p.zone_id, p.confidence)
                        if p.activity is not None:
                            span = agg.activities.setdefault(p.activity, [enc.t_us, enc.t_us, 0])
                            span[0], span[1] = min(span[0], enc.t_us), max(span[1], enc.t_us)
                            span[2] += 1
                conn.executemany(_INSERT_FRAME, frames)
                conn.executemany(_INSERT_PERSON_ROW, person_rows)
                conn.executemany(
                    _UPSERT_PERSON,
                    [
                        (pid, a.space_id, a.first_us, a.last_us, a.zone_id, a.confidence_sum,
                         a.frames)
                        for pid, a in aggs.items()
                    ],
                )  # fmt: skip
                conn.executemany(
                    _UPSERT_ACTIVITY,
                    [
                        (pid, name, span[0], span[1], span[2])
                        for pid, a in aggs.items()
                        for name, span in a.activities.items()
                    ],
                )
            self._buffer = []
            self._auto_flush_at = self.max_buffer_frames
            self.frames_written += len(batch)
            return len(batch)

    def _before_close(self) -> None:
        self.flush()

    def history(
        self,
        start: dt.datetime | float,
        end: dt.datetime | float,
        person_id: str | None = None,
        limit: int = 100,
        skip: int = 0,
        space_id: str | None = None,
    ) -> list[PoseFrame]:
        """Stored frames with start ≤ timestamp ≤ end, oldest first (then in write order).

        With ``person_id`` only frames holding that person are returned, each reduced to
        that person alone. Frames still in the write buffer are not included.
        """
        rows = self._history_rows(start, end, person_id, limit, skip, space_id)
        return [decode_frame(*row, only_person=person_id) for row in rows]

    def history_dicts(
        self,
        start: dt.datetime | float,
        end: dt.datetime | float,
        person_id: str | None = None,
        limit: int = 100,
        skip: int = 0,
        space_id: str | None = None,
    ) -> list[dict[str, Any]]:
        """:meth:`history` as plain data (``PoseFrame.model_dump()`` form), for fast serving.

        Skips building pydantic models, which costs more than reading the rows.
        """
        rows = self._history_rows(start, end, person_id, limit, skip, space_id)
        return [decode_frame_dict(*row, only_person=person_id) for row in rows]

    def _history_rows(
        self,
        start: dt.datetime | float,
        end: dt.datetime | float,
        person_id: str | None,
        limit: int,
        skip: int,
        space_id: str | None,
    ) -> list[Any]:
        start_us, end_us = to_us(start, "start"), to_us(end, "end")
        if start_us > end_us:
            raise InvisPoseError(f"history start {start} is after end {end}")
        check_int(limit, "limit", 0, MAX_HISTORY_LIMIT)
        check_int(skip, "skip", 0)
        for name, value in (("person_id", person_id), ("space_id", space_id)):
            if value is not None and not isinstance(value, str):
                raise InvisPoseError(f"{name} must be a string, got {value!r}")
        if limit == 0:
            return []
        params: list[str | int]
        if person_id is None:
            where, params = "f.t_us BETWEEN ? AND ?", [start_us, end_us]
            if space_id is not None:
                where = "f.space_id = ? AND " + where
                params.insert(0, space_id)
            sql = (
                f"SELECT {_FRAME_COLUMNS} FROM pose_frames f WHERE {where} "
                "ORDER BY f.t_us, f.id LIMIT ? OFFSET ?"
            )
        else:
            where, params = "p.person_id = ? AND p.t_us BETWEEN ? AND ?", [
                person_id, start_us, end_us,
            ]  # fmt: skip
            if space_id is not None:
                where += " AND p.space_id = ?"
                params.append(space_id)
            sql = (
                f"SELECT {_FRAME_COLUMNS} FROM pose_persons p "
                f"JOIN pose_frames f ON f.id = p.frame_rowid WHERE {where} "
                "ORDER BY p.t_us, p.frame_rowid LIMIT ? OFFSET ?"
            )
        with self._lock:
            return self._query(sql, [*params, limit, skip])

    def latest(self, space_id: str | None = None) -> PoseFrame | None:
        """The newest stored frame (of one space, or of all)."""
        where, params = ("WHERE f.space_id = ?", [space_id]) if space_id is not None else ("", [])
        sql = f"SELECT {_FRAME_COLUMNS} FROM pose_frames f {where} ORDER BY f.t_us DESC, f.id DESC"
        with self._lock:
            rows = self._query(sql + " LIMIT 1", params)
        return decode_frame(*rows[0]) if rows else None

    def prune(self, now: dt.datetime | float | None = None, *, batch_frames: int = 5000) -> int:
        """Delete pose history older than ``history_days`` before ``now``; return frames deleted.

        Works in transactions of about ``batch_frames`` frames so writers are not held
        up for long. Persons last seen before the cutoff, finished outbox rows and
        delivery log entries older than the cutoff go too; events are kept.
        """
        check_int(batch_frames, "batch_frames", 1)
        now_us = to_us(time.time() if now is None else now, "now")
        cutoff = now_us - round(self.history_days * _US_PER_DAY)
        deleted = 0
        while True:
            with self._lock, self._transaction() as conn:
                row = conn.execute(
                    "SELECT t_us FROM pose_frames WHERE t_us < ? ORDER BY t_us LIMIT 1 OFFSET ?",
                    (cutoff, batch_frames - 1),
                ).fetchone()
                bound = cutoff if row is None else min(cutoff, int(row[0]) + 1)
                # Only persons first seen before the bound can own rows older than it:
                # per-person range deletes on the (person_id, t_us) key, no time index.
                pids = conn.execute(
                    "SELECT person_id FROM persons WHERE first_seen_us < ?", (bound,)
                ).fetchall()
                conn.executemany(
                    "DELETE FROM pose_persons WHERE person_id = ? AND t_us < ?",
                    [(pid, bound) for (pid,) in pids],
                )
                deleted += conn.execute("DELETE FROM pose_frames WHERE t_us < ?", (bound,)).rowcount
            if bound == cutoff:
                break
        with self._lock, self._transaction() as conn:
            conn.execute(
                "DELETE FROM person_activities WHERE person_id IN "
                "(SELECT person_id FROM persons WHERE last_seen_us < ?)",
                (cutoff,),
            )
            conn.execute("DELETE FROM persons WHERE last_seen_us < ?", (cutoff,))
            conn.execute(
                "DELETE FROM webhook_outbox WHERE state != 'pending' AND updated_us < ?",
                (cutoff,),
            )
            conn.execute("DELETE FROM webhook_deliveries WHERE at_us < ?", (cutoff,))
        if deleted:
            logger.info("pruned %d pose frames older than %.1f days", deleted, self.history_days)
        return deleted
