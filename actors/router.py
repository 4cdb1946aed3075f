"""RouterActor: one per router. Source → reader → windows → its space's tracker.

The tracker gathers the hop's windows of all the space's routers and runs inference on
them together (``actors/tracker.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from typing import Any

import numpy as np
import ray

from invispose.config import SiteConfig
from invispose.csi.motion import MotionDetector
from invispose.ingest import FrameSource, build_source, router_windower
from invispose.schemas import CsiWindow

logger = logging.getLogger(__name__)

MAX_IN_FLIGHT = 2  # windows awaiting inference at once; older pending windows are dropped
SOURCE_RETRY_MAX_S = 30.0
STALE_AFTER_S = 2.0  # no packet for this long: the router reports itself disconnected


class RouterHost:
    """Hosts one router's pipeline; counters are read by the supervisor and the API."""

    def __init__(self, site: dict[str, Any], router_id: str, tracker: Any) -> None:
        self.site = SiteConfig.model_validate(site)
        self.router = next(r for r in self.site.routers if r.id == router_id)
        self.space = self.site.space(self.router.space)
        model = self.site.model
        self.hop_s = model.hop_s
        self.windower = router_windower(self.site, self.router)
        self.motion = MotionDetector(rate_hz=1.0 / self.hop_s)
        self.tracker = tracker
        self._source: FrameSource | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._in_flight = 0
        self._sending: set[asyncio.Task[None]] = set()
        self._pending: CsiWindow | None = None
        self._last_window_arrival_s = -math.inf
        self.started_s = time.time()
        self.counters = {
            "packets": 0,
            "windows": 0,
            "windows_dropped": 0,
            "windows_sent": 0,  # handed to the space's tracker
            "send_errors": 0,
            "source_errors": 0,
        }
        self._packet_times: deque[tuple[float, int]] = deque(maxlen=1024)
        self._latency_ms: deque[float] = deque(maxlen=512)
        self.last_seen_s: float | None = None
        self.last_error: str | None = None
        self._bad_records_closed = 0  # from sources that ended or failed
        self._spoofed_closed = 0

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> bool:
        """Start ingest and windowing (idempotent; also runs after a restart)."""
        if not self._tasks:
            loop = asyncio.get_running_loop()
            self._tasks = [loop.create_task(self._ingest()), loop.create_task(self._windows())]
        return True

    async def stop(self) -> None:
        """Stop the source and loops."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._source is not None:
            self._source.close()

    # -- ingest ------------------------------------------------------------------------

    async def _ingest(self) -> None:
        backoff_s = 0.5
        while True:
            try:
                self._source = build_source(self.router, self.space)
                async for frames in self._source.frames():
                    for frame in frames:
                        self.windower.push(frame)
                    self.counters["packets"] += len(frames)
                    now = time.time()
                    self.last_seen_s = now
                    self._packet_times.append((now, len(frames)))
                    backoff_s = 0.5
                logger.info("router %s: source ended", self.router.id)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a source failure never ends the router
                self.counters["source_errors"] += 1
                self.last_error = str(exc)
                logger.exception("router %s: source failed; retrying", self.router.id)
            finally:
                if self._source is not None:
                    self._source.close()
                    self._bad_records_closed += self._source.bad_records
                    self._spoofed_closed += self._source.spoofed
                    self._source = None
            jitter = 1.0 + 0.2 * np.random.default_rng().random()
            await asyncio.sleep(backoff_s * jitter)
            backoff_s = min(backoff_s * 2, SOURCE_RETRY_MAX_S)

    # -- windows and inference ----------------------------------------------------------

    async def _windows(self) -> None:
        # Windows are cut on wall-clock multiples of hop_s, so the routers of one space
        # deliver their detections together and the tracker fuses them without waiting.
        while True:
            now = time.time()
            await asyncio.sleep(self.hop_s - (now % self.hop_s))
            try:
                self._cut_window()
            except Exception as exc:
                self.last_error = str(exc)
                logger.exception("router %s: windowing failed", self.router.id)

    def _cut_window(self) -> None:
        window = self.windower.make_window()
        if window is None or window.t_end_s <= self._last_window_arrival_s:
            return  # nothing new arrived since the last window
        self._last_window_arrival_s = window.t_end_s
        self.counters["windows"] += 1
        self._update_motion(window)
        if self._in_flight < MAX_IN_FLIGHT:
            self._launch(window)
            return
        if self._pending is not None:
            self.counters["windows_dropped"] += 1
        self._pending = window

    def _update_motion(self, window: CsiWindow) -> None:
        valid = np.flatnonzero(window.valid)
        if len(valid):
            self.motion.update(window.amplitude[:, valid[-1], :], window.t_end_s)

    def _launch(self, window: CsiWindow) -> None:
        self._in_flight += 1
        task = asyncio.get_running_loop().create_task(self._infer(window))
        self._sending.add(task)  # a task nobody references may be collected mid-flight
        task.add_done_callback(self._sending.discard)

    async def _infer(self, window: CsiWindow) -> None:
        """Hand the window to the space's tracker, which batches the hop for inference."""
        try:
            await self.tracker.submit_window.remote(window)
            self._latency_ms.append((time.time() - window.t_end_s) * 1e3)
            self.counters["windows_sent"] += 1
        except Exception as exc:
            self.counters["send_errors"] += 1
            self.last_error = str(exc)
            logger.warning("router %s: handing the window to the tracker failed: %s",
                           self.router.id, exc)
        finally:
            self._in_flight -= 1
            if self._pending is not None and self._in_flight < MAX_IN_FLIGHT:
                window, self._pending = self._pending, None
                self._launch(window)

    # -- status ------------------------------------------------------------------------

    async def status(self) -> dict[str, Any]:
        """State, packet rate, drops, bad records, last seen and motion score."""
        now = time.time()
        packets_1s = sum(n for t, n in self._packet_times if now - t <= 1.0)
        if self.last_seen_s is None:
            state = "waiting"
        elif now - self.last_seen_s < STALE_AFTER_S:
            state = "connected"
        else:
            state = "disconnected"
        latency = np.array(self._latency_ms) if self._latency_ms else np.zeros(1)
        return {
            "id": self.router.id,
            "space_id": self.space.id,
            "kind": self.router.kind,
            "state": state,
            "packets_per_s": float(packets_1s),
            "drops": self.counters["windows_dropped"] + self.windower.frames_dropped,
            "bad_records": self._bad_records_closed
            + (self._source.bad_records if self._source is not None else 0),
            "spoofed_datagrams": self._spoofed_closed
            + (self._source.spoofed if self._source is not None else 0),
            "last_seen": self.last_seen_s,
            "motion_score": round(float(self.motion.score), 4),
            "motion_present": bool(self.motion.present),
            "window_latency_ms_p50": round(float(np.percentile(latency, 50)), 2),
            "last_error": self.last_error,
            **self.counters,
        }

    async def ping(self) -> bool:
        """Liveness check."""
        return True


RouterActor = ray.remote(RouterHost)
