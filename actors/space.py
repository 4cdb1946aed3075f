"""SpaceActor: one per space. Its routers, one inference request per hop, tracking, publishing.

The hot path runs in this one process: every hop (wall-clock multiples of ``hop_s``) the
space's router units cut their windows, which go to the PoseEstimator as one request
(with the windows of routers hosted in ``RouterGroupActor``s, which arrive by
``submit_windows`` on the same hops); the detections are tracked here, the pose frame is
encoded once (``invispose.bus.pose_message``) and handed to the bus without waiting.
Nothing on this path awaits the store: history writes are fire-and-forget (bounded), and
the step's events go to a writer task that stores them first and publishes only what is
stored, in order, retrying while the store cannot write.

At most ``runtime.max_hops_in_flight`` hops await inference; while that many do, hops are
not cut at all (``hops_skipped``: windows no one would use cost no work), and the first
hop after a slot frees cuts the newest packets. ``submit`` takes detections made elsewhere
(tests, replays of detections).
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
from actors.router import RouterUnits, sleep_to_next_hop
from invispose.alerts import InactivityWatch, PerformanceWatch, floor_positions
from invispose.bus import EVENT_TOPIC, POSE_TOPIC, event_message, pose_message
from invispose.config import AlertConfig, SiteConfig, ZoneConfig
from invispose.errors import InvisPoseError, StoreWriteError
from invispose.schemas import CsiWindow, Detection, Event, PoseFrame
from invispose.tracking import Tracker

logger = logging.getLogger(__name__)

COALESCE_S = 0.02  # after its own cut, wait this long for windows from router groups
MAX_UNSENT_EVENTS = 10_000  # events kept while the store cannot write them
MAX_PENDING_WRITES = 8  # history writes in flight at once
MAX_PENDING_PUBLISHES = 8  # pose frames on their way to the bus at once
EVENT_RETRY_S = 0.5  # the event writer's pause after a failed write
SNAPSHOT_INTERVAL_S = 1.0


class SpaceHost:
    """A space's ``Tracker`` and the ``RouterUnits`` that share its process."""

    def __init__(
        self, site: dict[str, Any], space_id: str, store: Any, bus: Any,
        routers: list[str] | None = None,
    ) -> None:
        self.site = SiteConfig.model_validate(site)
        self.space_id = space_id
        self.tracker = Tracker.from_config(self.site, space_id)
        self.watch = PerformanceWatch(self.site.alerts, space_id)  # alert rules of its hops
        self.stillness = InactivityWatch(self.site.alerts, space_id)
        self.units = RouterUnits(self.site, list(routers or []))
        self.store = store
        self.bus = bus
        self.max_in_flight = self.site.runtime.max_hops_in_flight
        self._remote: dict[str, CsiWindow] = {}  # this hop's windows from router groups
        self._remote_arrived = asyncio.Event()
        self._grouped: set[str] = set()  # routers of router groups that sent windows
        self._estimator: Any = None
        self._in_flight = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[None]] = set()  # every fire-and-forget task
        self._writes = 0  # history writes in flight
        self._publishes = 0  # bus publishes in flight
        self._started = False
        self._start_lock = asyncio.Lock()
        self._unsent: deque[Event] = deque(maxlen=MAX_UNSENT_EVENTS)
        self._events_ready = asyncio.Event()
        self._last_step_t_s = float("-inf")
        self.counters = {
            "steps": 0, "detections": 0, "windows": 0, "hops": 0, "hops_skipped": 0,
            "windows_inferred": 0,
            "superseded": 0, "stale": 0, "errors": 0, "events": 0, "inference_errors": 0,
            "event_store_errors": 0, "events_rejected": 0, "events_dropped": 0,
            "history_dropped": 0, "history_errors": 0, "frames_unpublished": 0,
            "publish_errors": 0,
        }
        self.last_step_ms = 0.0

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> bool:
        """Restore the last snapshot (person ids survive restarts), start the routers and
        the loops (idempotent; also runs after a restart)."""
        async with self._start_lock:
            if self._started:
                return True
            try:
                snapshot = await self.store.query.remote("load_snapshot", self.space_id)
                if snapshot:
                    self.tracker.restore(snapshot)
                    logger.info("space %s: restored %d persons", self.space_id,
                                len(self.tracker.person_ids))
            except Exception:
                logger.exception("space %s: snapshot restore failed", self.space_id)
            loop = asyncio.get_running_loop()
            self._tasks = [
                loop.create_task(self._hops()),
                loop.create_task(self._snapshots()),
                loop.create_task(self._event_writer()),
            ]
            self.units.start()
            self._started = True
        return True

    async def stop(self) -> None:
        """Stop the routers and loops; events not yet stored get one last try."""
        await self.units.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        self._started = False
        with contextlib.suppress(Exception):
            await self._store_and_publish_events()

    async def add_router(self, site: dict[str, Any], router_id: str) -> bool:
        """Host one more router of this space."""
        self.site = SiteConfig.model_validate(site)
        self.units.add(self.site, router_id)
        return True

    async def remove_router(self, router_id: str) -> bool:
        """Stop one router hosted here; False if it is not."""
        self._grouped.discard(router_id)
        self._remote.pop(router_id, None)
        return await self.units.remove(router_id)

    async def routers_status(self) -> list[dict[str, Any]]:
        """Status of the routers hosted in this process."""
        return self.units.status()

    # -- input -------------------------------------------------------------------------

    async def submit_windows(self, windows: list[CsiWindow]) -> None:
        """A router group's windows of one hop (joined to this process's own)."""
        if not self._started:
            await self.start()
        for window in windows:
            if window.router_id in self._remote:
                self.counters["superseded"] += 1
            self._remote[window.router_id] = window
            self._grouped.add(window.router_id)
        self._remote_arrived.set()

    async def submit(self, detection: Detection) -> None:
        """Track one detection made elsewhere, as its own step."""
        if not self._started:
            await self.start()
        self.counters["detections"] += 1
        self._step([detection])

    # -- the hop -----------------------------------------------------------------------

    async def _hops(self) -> None:
        while True:
            await sleep_to_next_hop(self.site.model.hop_s)
            if self._in_flight >= self.max_in_flight:
                # inference is behind: cutting windows now would only make work that a
                # newer hop replaces; the next hop after a slot frees cuts fresh ones
                self.counters["hops_skipped"] += 1
                continue
            try:
                windows = self.units.cut()
                if self._grouped:  # router groups cut on the same hop; give them a moment
                    deadline = time.monotonic() + COALESCE_S
                    while not self._grouped <= set(self._remote):
                        self._remote_arrived.clear()
                        left = deadline - time.monotonic()
                        if left <= 0:
                            break
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(self._remote_arrived.wait(), left)
                    windows += self._remote.values()
                    self._remote.clear()
                if windows:  # a slot is free: only this loop takes them, hops free them
                    self.counters["windows"] += len(windows)
                    self._in_flight += 1
                    self._spawn(self._run_hop(windows))
            except Exception:
                self.counters["errors"] += 1
                logger.exception("space %s: hop failed", self.space_id)

    def _spawn(self, coro: Any) -> None:
        """A background task, referenced until done (an unreferenced task may be
        collected mid-flight); its failure is logged by the coroutine itself."""
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _run_hop(self, windows: list[CsiWindow]) -> None:
        try:
            detections = await self._infer(windows)
            if detections:
                self._step(detections)
        except Exception:
            self.counters["errors"] += 1
            logger.exception("space %s: step failed", self.space_id)
        finally:
            self._in_flight -= 1

    async def _infer(self, windows: list[CsiWindow]) -> list[Detection]:
        """Detections of one hop's windows from the PoseEstimator (none if it failed)."""
        sent_s = time.time()
        self.counters["hops"] += 1
        try:
            if self._estimator is None:
                from ray import serve

                self._estimator = serve.get_deployment_handle(
                    ESTIMATOR_DEPLOYMENT, app_name=SERVE_APP
                )
            detections: list[Detection] = await self._estimator.remote(windows)
        except Exception as exc:
            self.counters["inference_errors"] += 1
            self.units.sent(windows, False, f"inference failed: {type(exc).__name__}")
            logger.warning("space %s: inference failed: %s", self.space_id, exc)
            alerts = self.watch.failure(time.time(), type(exc).__name__)
            if alerts:
                self._queue_events(alerts)
            return []
        self.units.sent(windows, True)
        self.counters["windows_inferred"] += len(windows)
        done_s = time.time()
        newest = {w.router_id: w.t_end_s for w in windows}
        for detection in detections:
            ends = [newest.get(r, detection.t_end_s) for r in detection.router_id.split("+")]
            detection.latency_ms["ingest"] = (sent_s - max(ends)) * 1e3
            detection.latency_ms["inference"] = (done_s - sent_s) * 1e3
        self.counters["detections"] += len(detections)
        return detections

    def _step(self, detections: list[Detection]) -> None:
        """Track, publish the frame, queue the events and the history write: no waiting."""
        t_end_s = max(d.t_end_s for d in detections)
        if t_end_s <= self._last_step_t_s:  # an older hop overtaken by a newer one
            self.counters["stale"] += 1
            return
        self._last_step_t_s = t_end_s
        start = time.perf_counter()
        update = self.tracker.update(detections, time.time())
        tracking_ms = (time.perf_counter() - start) * 1e3
        self.last_step_ms = tracking_ms
        self.counters["steps"] += 1
        frame = update.pose_frame
        latency = {
            "ingest": max(d.latency_ms.get("ingest", 0.0) for d in detections),
            "inference": max(d.latency_ms.get("inference", 0.0) for d in detections),
            "tracking": tracking_ms,
        }
        frame.metadata["latency_ms"] = {k: round(v, 3) for k, v in latency.items()}
        frame.metadata["newest_packet_time"] = t_end_s
        now = time.time()
        frame.processing_time_ms = round((now - t_end_s) * 1e3, 3)
        self._publish(pose_message(self.space_id, frame, t_end_s))
        events = [*update.events, *self.watch.hop(now, frame.processing_time_ms)]
        if self.stillness.enabled:  # the positions only when the rule is on
            events += self.stillness.frame(now, floor_positions(frame))
        if events:
            self._queue_events(events)
        self._write_history(frame)

    def _publish(self, message: dict[str, Any]) -> None:
        if self._publishes >= MAX_PENDING_PUBLISHES:  # the bus is stuck: frames are
            self.counters["frames_unpublished"] += 1  # replaceable, the next one follows
            return
        self._publishes += 1
        self._spawn(self._send_to_bus(message))

    async def _send_to_bus(self, message: dict[str, Any]) -> None:
        try:
            await self.bus.publish.remote(POSE_TOPIC, [message])
        except Exception as exc:
            self.counters["publish_errors"] += 1
            logger.warning("space %s: publishing a frame failed: %s", self.space_id, exc)
        finally:
            self._publishes -= 1

    # -- events: stored first, then published ------------------------------------------

    def _queue_events(self, new: list[Event]) -> None:
        overflow = len(self._unsent) + len(new) - MAX_UNSENT_EVENTS
        if overflow > 0:
            self.counters["events_dropped"] += overflow
        self._unsent.extend(new)
        self._events_ready.set()

    async def _event_writer(self) -> None:
        while True:
            await self._events_ready.wait()
            self._events_ready.clear()
            if not await self._store_and_publish_events():
                self._events_ready.set()  # kept: try again shortly
                await asyncio.sleep(EVENT_RETRY_S)

    async def _store_and_publish_events(self) -> bool:
        """Store the unsent events, oldest first, then publish the stored ones. False when
        the store could not write them (they stay, in order, for the next try); events the
        store rejects as malformed are dropped (counted), since retrying cannot help."""
        if not self._unsent:
            return True
        batch = list(self._unsent)
        try:
            stored: list[Event] = await self.store.append_events.remote(batch)
        except StoreWriteError as exc:  # locked, full: they are intact, try again
            self.counters["event_store_errors"] += 1
            logger.warning("space %s: storing %d events failed (%s); kept", self.space_id,
                           len(batch), exc)
            return False
        except InvisPoseError as exc:
            self.counters["events_rejected"] += len(batch)
            self._drop_first(len(batch))
            logger.error("space %s: store rejected %d events: %s", self.space_id, len(batch),
                         exc)
            return True
        except Exception as exc:  # the store restarting
            self.counters["event_store_errors"] += 1
            logger.warning("space %s: storing %d events failed (%s); kept", self.space_id,
                           len(batch), type(exc).__name__)
            return False
        self._drop_first(len(batch))
        self.counters["events"] += len(stored)
        try:
            await self.bus.publish.remote(EVENT_TOPIC, [event_message(e) for e in stored])
        except Exception as exc:  # stored: subscribers read them back from the store
            self.counters["publish_errors"] += 1
            logger.warning("space %s: publishing %d stored events failed: %s", self.space_id,
                           len(stored), exc)
        return True

    def _drop_first(self, n: int) -> None:
        """Forget the ``n`` oldest unsent events (written or rejected); newer ones that
        arrived during the write stay."""
        for _ in range(min(n, len(self._unsent))):
            self._unsent.popleft()

    # -- history -----------------------------------------------------------------------

    def _write_history(self, frame: PoseFrame) -> None:
        """Hand the frame to the store's history without waiting for it; at most
        ``MAX_PENDING_WRITES`` in flight (a frame beyond is not kept, counted), and every
        failure is counted and logged."""
        if self._writes >= MAX_PENDING_WRITES:
            self.counters["history_dropped"] += 1
            return
        self._writes += 1
        self._spawn(self._add_frame(frame))

    async def _add_frame(self, frame: PoseFrame) -> None:
        try:
            await self.store.add_pose_frames.remote([(self.space_id, frame)])
        except Exception as exc:
            self.counters["history_errors"] += 1
            logger.warning("space %s: history write failed: %s", self.space_id, exc)
        finally:
            self._writes -= 1

    async def _snapshots(self) -> None:
        while True:
            await asyncio.sleep(SNAPSHOT_INTERVAL_S)
            try:
                await self.store.save_snapshot.remote(self.space_id, self.tracker.snapshot())
            except Exception:
                logger.exception("space %s: snapshot failed", self.space_id)

    # -- status ------------------------------------------------------------------------

    async def status(self) -> dict[str, Any]:
        """Counters, current persons and zone occupancy."""
        return {
            "space_id": self.space_id,
            "persons": self.tracker.person_ids,
            "zones": self.tracker.zone_occupancy(),
            "routers": sorted(self.units.units),
            "last_step_ms": round(self.last_step_ms, 3),
            "events_unsent": len(self._unsent),
            "hops_in_flight": self._in_flight,
            **self.counters,
        }

    async def configure_alerts(self, alerts: dict[str, Any]) -> None:
        """Replace the alert rules this space watches, live."""
        config = AlertConfig.model_validate(alerts)
        self.watch.config = config
        self.stillness.config = config

    async def configure_zone(self, zone: dict[str, Any]) -> None:
        """Change (or add) one of this space's zones, live."""
        self.tracker.configure_zone(ZoneConfig.model_validate(zone))

    async def ping(self) -> bool:
        """Liveness check."""
        return True


SpaceActor = ray.remote(SpaceHost)
