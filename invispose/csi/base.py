"""The incremental reader contract every CSI format implements.

A reader is fed bytes as they arrive (a file read in chunks, UDP datagrams, serial
reads) and returns the complete frames it could decode. Bad records are skipped,
counted in ``bad_records`` and kept (the most recent few) in ``errors``; the reader
resynchronises on the next valid record. ``feed`` raises ``CsiParseError`` only when
the stream as a whole cannot be read (for example a pcap file whose global header is
not pcap); it never raises anything else, whatever the input.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections import deque

from invispose.errors import CsiParseError
from invispose.schemas import CsiFrame

MAX_KEPT_ERRORS = 32


class CsiReader(ABC):
    """Incremental decoder from bytes to ``CsiFrame``s for one CSI format."""

    #: format name used by the registry and in ``CsiFrame.format``
    format: str = ""

    def __init__(self, router_id: str = "", *, chipset: str | None = None) -> None:
        self.router_id = router_id
        self.chipset = chipset
        self.frames_decoded = 0
        self.bad_records = 0
        self.errors: deque[CsiParseError] = deque(maxlen=MAX_KEPT_ERRORS)

    @abstractmethod
    def feed(self, data: bytes, arrival_time_s: float | None = None) -> list[CsiFrame]:
        """Decode what ``data`` completes; keep any partial trailing record for later."""

    def feed_datagram(
        self, datagram: bytes, arrival_time_s: float | None = None
    ) -> list[CsiFrame]:
        """Decode one whole datagram (UDP).

        No partial record is carried over; a reader that groups several datagrams into one
        frame (Nexmon: one payload per core) keeps the open group until it is complete, the
        next group starts, or ``flush`` is called.
        """
        frames = self.feed(datagram, arrival_time_s)
        return frames + self.flush()

    def flush(self) -> list[CsiFrame]:
        """End of stream: decode what is buffered; a partial record counts as bad."""
        return []

    def _reject(self, error: CsiParseError) -> None:
        """Count and remember one bad record (the caller skips it and goes on)."""
        self.bad_records += 1
        self.errors.append(error)

    @staticmethod
    def _now(arrival_time_s: float | None) -> float:
        return time.time() if arrival_time_s is None else arrival_time_s
