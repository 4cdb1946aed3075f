"""Alert rules a space watches on its own hops: performance degraded and system error.

``PerformanceWatch`` sees every hop's end-to-end latency (newest packet → frame made) and
every inference failure, and says when to raise ``alert.performance_degraded`` (the p95
over ``window_s`` above ``latency_p95_ms``, with enough hops to mean it; again every
``repeat_s`` while it lasts) and ``alert.system_error`` (``consecutive_failures``
inference failures in a row; once per streak).

``InactivityWatch`` raises ``analytics.threshold_exceeded`` (metric ``inactive_s``) when
a person present has not moved more than ``inactivity_radius_m`` for ``inactivity_s``;
once per still spell. Zone rules (high occupancy, restricted zones) live with the zones
(``invispose/tracking/zones.py``).
"""

from __future__ import annotations

import datetime as dt
from collections import deque

import numpy as np

from invispose import events as ev
from invispose.config import AlertConfig
from invispose.schemas import Event, PoseFrame

MIN_SAMPLES = 20  # hops in the window before a p95 means anything


class PerformanceWatch:
    """Latency and failure rules of one space (see the module doc)."""

    def __init__(self, config: AlertConfig, space_id: str) -> None:
        self.config = config
        self.space_id = space_id
        self.latencies: deque[tuple[float, float]] = deque()  # (time s, latency ms)
        self.failures = 0
        self.last_degraded_s: float | None = None
        self.raised_errors = 0

    def hop(self, now_s: float, latency_ms: float) -> list[Event]:
        """A hop made a frame ``latency_ms`` after its newest packet."""
        self.failures = 0
        self.latencies.append((now_s, latency_ms))
        while self.latencies and self.latencies[0][0] < now_s - self.config.window_s:
            self.latencies.popleft()
        if len(self.latencies) < MIN_SAMPLES:
            return []
        p95 = float(np.percentile([ms for _, ms in self.latencies], 95))
        if p95 <= self.config.latency_p95_ms:
            self.last_degraded_s = None  # recovered: the next breach alerts at once
            return []
        if self.last_degraded_s is not None and (
            now_s - self.last_degraded_s < self.config.repeat_s
        ):
            return []
        self.last_degraded_s = now_s
        payload = ev.performance_degraded(
            _utc(now_s), "hop_latency_p95_ms", round(p95, 1), self.config.latency_p95_ms,
            component=f"space:{self.space_id}")
        return [ev.make_event(ev.PERFORMANCE_DEGRADED, payload, _utc(now_s), self.space_id)]

    def failure(self, now_s: float, reason: str) -> list[Event]:
        """A hop's inference failed (``reason``: the exception's name)."""
        self.failures += 1
        if self.failures != self.config.consecutive_failures:
            return []
        self.raised_errors += 1
        payload = ev.system_error(
            _utc(now_s), "estimator",
            f"inference failed {self.failures} hops in a row in space {self.space_id} "
            f"({reason})")
        return [ev.make_event(ev.SYSTEM_ERROR, payload, _utc(now_s), self.space_id)]


def _utc(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


class InactivityWatch:
    """Who has stayed within ``inactivity_radius_m`` of one spot for ``inactivity_s``."""

    def __init__(self, config: AlertConfig, space_id: str) -> None:
        self.config = config
        self.space_id = space_id
        self.anchor: dict[str, tuple[float, np.ndarray, bool]] = {}  # id -> (since, spot, told)

    @property
    def enabled(self) -> bool:
        """Whether the rule is on (``inactivity_s`` set)."""
        return self.config.inactivity_s is not None

    def frame(self, now_s: float, persons: list[tuple[str, np.ndarray, str | None]]
              ) -> list[Event]:
        """One frame's persons: (id, floor position (2,) m, zone id)."""
        limit = self.config.inactivity_s
        if limit is None:
            self.anchor.clear()  # turned off (live): spells start again when it is back
            return []
        out: list[Event] = []
        seen = set()
        for person_id, spot, zone_id in persons:
            seen.add(person_id)
            since, anchor, told = self.anchor.get(person_id, (now_s, spot, False))
            if float(np.linalg.norm(spot - anchor)) > self.config.inactivity_radius_m:
                since, anchor, told = now_s, spot, False  # moved: a new spell begins here
            if not told and now_s - since >= limit:
                told = True
                payload = ev.threshold_exceeded(_utc(now_s), "inactive_s",
                                                round(now_s - since, 1), limit, zone_id)
                payload["person_id"] = person_id
                out.append(ev.make_event(ev.THRESHOLD_EXCEEDED, payload, _utc(now_s),
                                         self.space_id))
            self.anchor[person_id] = (since, anchor, told)
        for gone in set(self.anchor) - seen:  # left or lost: their spell ends
            del self.anchor[gone]
        return out


def floor_positions(frame: PoseFrame) -> list[tuple[str, np.ndarray, str | None]]:
    """(person id, hip-centre floor position (2,) m, zone id) of a frame's persons that
    have 3-D keypoints."""
    out = []
    for person in frame.persons:
        hips = [k.position_m for k in person.keypoints[11:13] if k.position_m is not None]
        if len(hips) == 2:
            spot = (np.asarray(hips[0][:2]) + np.asarray(hips[1][:2])) / 2
            out.append((person.id, spot, person.zone_id))
    return out
