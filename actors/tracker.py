"""TrackerActor: one per space. A hop's router windows -> PoseEstimator -> tracked PoseFrames.

Routers hand their windows to their space's tracker (``submit_window``); once every router
of the space delivered this hop's window (or ``COALESCE_S`` after the first), the tracker
sends them to the PoseEstimator as one request (the classical localiser fuses them on the
floor; the learned model runs per window), then tracks, stores and publishes. One hop is
in inference at a time; a router's newer window replaces its pending one (counted).
``submit`` still takes detections made elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import ray

from actors.common import ESTIMATOR_DEPLOYMENT, SERVE_APP
from invispose.bus import EVENT_TOPIC, POSE_TOPIC
from invispose.config import SiteConfig
from invispose.schemas import CsiWindow, Detection, Event, PoseFrame
from invispose.tracking import Tracker

logger = logging.getLogger(__name__)

COALESCE_S = 0.02  # wait this long for the space's other routers before a step
SNAPSHOT_INTERVAL_S = 1.0


def event_message(event: Event) -> dict[str, Any]:
    """An event as it travels on the bus."""
    return {"topic": EVENT_TOPIC, **event.model_dump(mode="json")}


def pose_message(space_id: str, frame: PoseFrame, t_end_s: float) -> dict[str, Any]:
    """A pose frame as it travels on the bus."""
    return {
        "topic": POSE_TOPIC,
        "space_id": space_id,
        "t_end_s": t_end_s,
        "frame": frame.model_dump(mode="json"),
    }


class TrackerHost:
    """Hosts a space's ``Tracker``: coalesces router detections, stores, then publishes."""

    def __init__(self, site: dict[str, Any], space_id: str, store: Any, bus: Any) -> None:
        self.site = SiteConfig.model_validate(site)
        self.space_id = space_id
        self.tracker = Tracker.from_config(self.site, space_id)
        self.routers = {r.id for r in self.site.routers if r.space == space_id and r.enabled}
        self.store = store
        self.bus = bus
        self._pending: dict[str, Detection] = {}
        self._windows: dict[str, CsiWindow] = {}  # this hop's window per router
        self._estimator: Any = None
        self._first_pending_s: float | None = None
        self._window_arrival_s: dict[str, float] = {}  # when each pending window arrived
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._started = False
        self._start_lock = asyncio.Lock()
        self.counters = {
            "steps": 0, "detections": 0, "windows": 0, "superseded": 0, "errors": 0,
            "events": 0, "inference_errors": 0,
        }
        self.last_step_ms = 0.0

    async def start(self) -> bool:
        """Restore the last snapshot (person ids survive restarts) and start the loops."""
        async with self._start_lock:
            if self._started:
                return True
            try:
                snapshot = await self.store.query.remote("load_snapshot", self.space_id)
                if snapshot:
                    self.tracker.restore(snapshot)
                    logger.info(
                        "tracker %s: restored %d persons",
                        self.space_id,
                        len(self.tracker.person_ids),
                    )
            except Exception:
                logger.exception("tracker %s: snapshot restore failed", self.space_id)
            loop = asyncio.get_running_loop()
            self._tasks = [loop.create_task(self._steps()), loop.create_task(self._snapshots())]
            self._started = True
        return True

    async def submit(self, detection: Detection) -> None:
        """Accept one router's detection; a step runs when all routers reported or soon."""
        if not self._started:
            await self.start()
        self.counters["detections"] += 1
        if detection.router_id in self._pending:
            self.counters["superseded"] += 1
        self._pending[detection.router_id] = detection
        if self._first_pending_s is None:
            self._first_pending_s = time.monotonic()
        if self.routers <= set(self._pending):
            self._wake.set()

    async def submit_window(self, window: CsiWindow) -> None:
        """Accept one router's window of this hop; inference runs when the hop is complete."""
        if not self._started:
            await self.start()
        self.counters["windows"] += 1
        window_arrival_s = time.time()
        if window.router_id in self._windows:
            self.counters["superseded"] += 1
        self._windows[window.router_id] = window
        self._window_arrival_s[window.router_id] = window_arrival_s
        if self._first_pending_s is None:
            self._first_pending_s = time.monotonic()
        if self.routers <= set(self._windows):
            self._wake.set()

    async def _infer(
        self, windows: list[CsiWindow], arrival_s: dict[str, float]
    ) -> list[Detection]:
        """Detections of one hop's windows from the PoseEstimator (none if it failed)."""
        sent_s = time.time()
        try:
            if self._estimator is None:
                from ray import serve

                self._estimator = serve.get_deployment_handle(
                    ESTIMATOR_DEPLOYMENT, app_name=SERVE_APP
                )
            detections: list[Detection] = await self._estimator.remote(windows)
        except Exception as exc:
            self.counters["inference_errors"] += 1
            logger.warning("tracker %s: inference failed: %s", self.space_id, exc)
            return []
        done_s = time.time()
        for detection in detections:
            first = min((arrival_s.get(r, sent_s) for r in detection.router_id.split("+")),
                        default=sent_s)
            detection.latency_ms["ingest"] = (first - detection.t_end_s) * 1e3
            detection.latency_ms["inference"] = (done_s - sent_s) * 1e3
        self.counters["detections"] += len(detections)
        return detections

    async def _steps(self) -> None:
        while True:
            timeout_s = None
            if self._first_pending_s is not None:
                timeout_s = max(0.0, COALESCE_S - (time.monotonic() - self._first_pending_s))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout_s)
            self._wake.clear()
            if not self._windows and not self._pending:
                self._first_pending_s = None
                continue
            # the hop is taken whole; what arrives meanwhile starts the next one's clock
            windows = list(self._windows.values())
            arrival_s = dict(self._window_arrival_s)
            detections = list(self._pending.values())
            self._windows.clear()
            self._window_arrival_s.clear()
            self._pending.clear()
            self._first_pending_s = None
            try:
                if windows:
                    detections += await self._infer(windows, arrival_s)
                if detections:
                    await self._step(detections)
            except Exception:
                self.counters["errors"] += 1
                logger.exception("tracker %s: step failed", self.space_id)

    async def _step(self, detections: list[Detection]) -> None:
        start = time.perf_counter()
        update = self.tracker.update(detections, time.time())
        tracking_ms = (time.perf_counter() - start) * 1e3
        self.last_step_ms = tracking_ms
        self.counters["steps"] += 1
        frame = update.pose_frame
        t_end_s = max(d.t_end_s for d in detections)
        latency = {
            "ingest": max(d.latency_ms.get("ingest", 0.0) for d in detections),
            "inference": max(d.latency_ms.get("inference", 0.0) for d in detections),
            "tracking": tracking_ms,
        }
        frame.metadata["latency_ms"] = {k: round(v, 3) for k, v in latency.items()}
        frame.metadata["newest_packet_time"] = t_end_s
        frame.processing_time_ms = round((time.time() - t_end_s) * 1e3, 3)
        events: list[Event] = []
        if update.events:
            # events are durable before anyone hears of them
            events = await self.store.append_events.remote(update.events)
            self.counters["events"] += len(events)
        await self.bus.publish_pose_and_events.remote(
            pose_message(self.space_id, frame, t_end_s), [event_message(e) for e in events]
        )
        self.store.add_pose_frames.remote([(self.space_id, frame)])

    async def _snapshots(self) -> None:
        while True:
            await asyncio.sleep(SNAPSHOT_INTERVAL_S)
            try:
                await self.store.save_snapshot.remote(self.space_id, self.tracker.snapshot())
            except Exception:
                logger.exception("tracker %s: snapshot failed", self.space_id)

    async def status(self) -> dict[str, Any]:
        """Counters, current persons and zone occupancy."""
        return {
            "space_id": self.space_id,
            "persons": self.tracker.person_ids,
            "zones": self.tracker.zone_occupancy(),
            "last_step_ms": round(self.last_step_ms, 3),
            **self.counters,
        }

    async def ping(self) -> bool:
        """Liveness check."""
        return True


TrackerActor = ray.remote(TrackerHost)
