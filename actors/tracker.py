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
from collections import deque
from typing import Any

import ray

from actors.common import ESTIMATOR_DEPLOYMENT, SERVE_APP
from invispose.bus import EVENT_TOPIC, POSE_TOPIC
from invispose.config import SiteConfig
from invispose.errors import InvisPoseError, StoreWriteError
from invispose.schemas import CsiWindow, Detection, Event, PoseFrame
from invispose.tracking import Tracker

logger = logging.getLogger(__name__)

COALESCE_S = 0.02  # wait this long for the space's other routers before a step
MAX_UNSENT_EVENTS = 10_000  # events kept while the store cannot write them
MAX_PENDING_WRITES = 8  # history writes in flight at once
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
            "events": 0, "inference_errors": 0, "event_store_errors": 0, "events_rejected": 0,
            "events_dropped": 0, "history_dropped": 0, "history_errors": 0,
        }
        self._unsent: deque[Event] = deque(maxlen=MAX_UNSENT_EVENTS)
        self._writes: set[asyncio.Task[None]] = set()
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
        events = await self._store_events(update.events)
        await self.bus.publish_pose_and_events.remote(
            pose_message(self.space_id, frame, t_end_s), [event_message(e) for e in events]
        )
        self._write_history(frame)

    async def _store_events(self, new: list[Event]) -> list[Event]:
        """Store this step's events after any an earlier step could not; the stored ones.

        Events are durable before anyone hears of them. When the write fails (the store
        restarting, the database locked) they stay, in order, for the next step; only
        events the store rejects as malformed are dropped (counted), and past
        ``MAX_UNSENT_EVENTS`` the oldest go (counted).
        """
        overflow = len(self._unsent) + len(new) - MAX_UNSENT_EVENTS
        if overflow > 0:
            self.counters["events_dropped"] += overflow
        self._unsent.extend(new)
        if not self._unsent:
            return []
        batch = list(self._unsent)
        try:
            stored: list[Event] = await self.store.append_events.remote(batch)
        except StoreWriteError as exc:  # locked, full: they are intact, try again
            self.counters["event_store_errors"] += 1
            logger.warning("tracker %s: storing %d events failed (%s); kept for the next step",
                           self.space_id, len(batch), exc)
            return []
        except InvisPoseError as exc:  # the store refuses them: retrying cannot help
            self.counters["events_rejected"] += len(batch)
            self._unsent.clear()
            logger.error("tracker %s: store rejected %d events: %s", self.space_id,
                         len(batch), exc)
            return []
        except Exception as exc:
            self.counters["event_store_errors"] += 1
            logger.warning("tracker %s: storing %d events failed (%s); kept for the next step",
                           self.space_id, len(batch), type(exc).__name__)
            return []
        self._unsent.clear()
        self.counters["events"] += len(stored)
        return stored

    def _write_history(self, frame: PoseFrame) -> None:
        """Hand the frame to the store's history without waiting for it; at most
        ``MAX_PENDING_WRITES`` in flight (a frame beyond is not kept, counted), and every
        failure is counted and logged."""
        if len(self._writes) >= MAX_PENDING_WRITES:
            self.counters["history_dropped"] += 1
            return
        task = asyncio.get_running_loop().create_task(self._add_frame(frame))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _add_frame(self, frame: PoseFrame) -> None:
        try:
            await self.store.add_pose_frames.remote([(self.space_id, frame)])
        except Exception as exc:
            self.counters["history_errors"] += 1
            logger.warning("tracker %s: history write failed: %s", self.space_id, exc)

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
            "events_unsent": len(self._unsent),
            **self.counters,
        }

    async def ping(self) -> bool:
        """Liveness check."""
        return True


TrackerActor = ray.remote(TrackerHost)
