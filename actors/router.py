"""Routers: one ``RouterUnit`` per router, several per process (``runtime.routers_per_process``).

A unit is one router's own pipeline — source, reader, ring buffer, motion score, counters
and its own retry with backoff — and nothing else: its space's host (``actors/space.py``)
cuts every unit's window of a hop at once and sends them to inference as one request.
Routers beyond a space process's share run in a ``RouterGroupActor`` that cuts its units'
windows on the same wall-clock hops and hands each hop to the space in one call.
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

SOURCE_RETRY_MAX_S = 30.0
STALE_AFTER_S = 2.0  # no packet for this long: the router reports itself disconnected


async def sleep_to_next_hop(hop_s: float) -> None:
    """Until the next wall-clock multiple of ``hop_s``: every process of a space (and every
    space) cuts its windows at the same moments, so a hop's windows arrive together."""
    await asyncio.sleep(hop_s - (time.time() % hop_s))


class RouterUnit:
    """One router: its source task feeds its Windower; ``cut`` makes this hop's window."""

    def __init__(self, site: SiteConfig, router_id: str) -> None:
        self.router = next(r for r in site.routers if r.id == router_id)
        self.space = site.space(self.router.space)
        self.windower = router_windower(site, self.router)
        self.motion = MotionDetector(rate_hz=1.0 / site.model.hop_s)
        self._source: FrameSource | None = None
        self._task: asyncio.Task[None] | None = None
        self._last_window_arrival_s = -math.inf
        self.counters = {
            "packets": 0,
            "windows": 0,
            "windows_dropped": 0,  # cut but replaced before inference took them
            "windows_sent": 0,  # taken by inference (or by the space, from a group)
            "send_errors": 0,  # in a hop whose inference failed
            "source_errors": 0,
        }
        self._packet_times: deque[tuple[float, int]] = deque(maxlen=1024)
        self._latency_ms: deque[float] = deque(maxlen=512)
        self.last_seen_s: float | None = None
        self.last_error: str | None = None
        self._bad_records_closed = 0  # from sources that ended or failed
        self._spoofed_closed = 0

    @property
    def id(self) -> str:
        """The router's id."""
        return self.router.id

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Start the source (idempotent)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._ingest(), name=f"router {self.id}"
            )

    async def stop(self) -> None:
        """Stop the source and release it."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._source is not None:
            self._source.close()

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
                logger.info("router %s: source ended", self.id)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a source failure never ends the router
                self.counters["source_errors"] += 1
                self.last_error = str(exc)
                logger.exception("router %s: source failed; retrying", self.id)
            finally:
                if self._source is not None:
                    self._source.close()
                    self._bad_records_closed += self._source.bad_records
                    self._spoofed_closed += self._source.spoofed
                    self._source = None
            jitter = 1.0 + 0.2 * np.random.default_rng().random()
            await asyncio.sleep(backoff_s * jitter)
            backoff_s = min(backoff_s * 2, SOURCE_RETRY_MAX_S)

    # -- windows -----------------------------------------------------------------------

    def cut(self) -> CsiWindow | None:
        """This hop's window, or None when nothing arrived since the last one (or the cut
        failed: counted in ``last_error``, the router goes on)."""
        try:
            window = self.windower.make_window()
        except Exception as exc:
            self.last_error = str(exc)
            logger.exception("router %s: windowing failed", self.id)
            return None
        if window is None or window.t_end_s <= self._last_window_arrival_s:
            return None
        self._last_window_arrival_s = window.t_end_s
        self.counters["windows"] += 1
        valid = np.flatnonzero(window.valid)
        if len(valid):
            self.motion.update(window.amplitude[:, valid[-1], :], window.t_end_s)
        return window

    def sent(self, window: CsiWindow, ok: bool, error: str | None = None) -> None:
        """Inference took ``window`` (ok) or failed on its hop."""
        if ok:
            self.counters["windows_sent"] += 1
            self._latency_ms.append((time.time() - window.t_end_s) * 1e3)
        else:
            self.counters["send_errors"] += 1
            self.last_error = error

    # -- status ------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
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
            "id": self.id,
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


class RouterUnits:
    """The routers one process hosts: add, remove, start, cut a hop, report."""

    def __init__(self, site: SiteConfig, router_ids: list[str]) -> None:
        self.site = site
        self.units: dict[str, RouterUnit] = {rid: RouterUnit(site, rid) for rid in router_ids}

    def start(self) -> None:
        """Start every unit's source (idempotent)."""
        for unit in self.units.values():
            unit.start()

    async def stop(self) -> None:
        """Stop every unit."""
        await asyncio.gather(*(u.stop() for u in self.units.values()))

    def add(self, site: SiteConfig, router_id: str) -> None:
        """Host and start one more router (``site`` holds its config)."""
        if router_id in self.units:
            raise ValueError(f"router {router_id!r} already runs")
        self.site = site
        unit = self.units[router_id] = RouterUnit(site, router_id)
        unit.start()

    async def remove(self, router_id: str) -> bool:
        """Stop and forget one router; False if it is not hosted here."""
        unit = self.units.pop(router_id, None)
        if unit is None:
            return False
        await unit.stop()
        return True

    def cut(self) -> list[CsiWindow]:
        """This hop's windows of the units that have something new."""
        return [w for w in (u.cut() for u in self.units.values()) if w is not None]

    def sent(self, windows: list[CsiWindow], ok: bool, error: str | None = None) -> None:
        """Tell each window's unit how its hop went (windows of other processes skipped)."""
        for window in windows:
            unit = self.units.get(window.router_id)
            if unit is not None:
                unit.sent(window, ok, error)

    def dropped(self, windows: list[CsiWindow]) -> None:
        """Count windows replaced before inference took them."""
        for window in windows:
            unit = self.units.get(window.router_id)
            if unit is not None:
                unit.counters["windows_dropped"] += 1

    def status(self) -> list[dict[str, Any]]:
        """Every hosted router's status."""
        return [u.status() for u in self.units.values()]


class RouterGroupHost:
    """Routers of a space beyond its own process's share: each hop, their windows go to
    the space in one call (at most ``runtime.max_hops_in_flight`` calls outstanding; a
    newer hop replaces the one waiting, counted per router)."""

    def __init__(self, site: dict[str, Any], router_ids: list[str], space: Any) -> None:
        self.site = SiteConfig.model_validate(site)
        self.units = RouterUnits(self.site, router_ids)
        self.space = space
        self.max_in_flight = self.site.runtime.max_hops_in_flight
        self._loop_task: asyncio.Task[None] | None = None
        self._in_flight = 0
        self._pending: list[CsiWindow] | None = None
        self._sending: set[asyncio.Task[None]] = set()

    async def start(self) -> bool:
        """Start the sources and the hop loop (idempotent; also runs after a restart)."""
        self.units.start()
        if self._loop_task is None or self._loop_task.done():
            self._loop_task = asyncio.get_running_loop().create_task(self._hops())
        return True

    async def stop(self) -> None:
        """Stop the hop loop and every router."""
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        await self.units.stop()

    async def add_router(self, site: dict[str, Any], router_id: str) -> bool:
        """Host one more router of this group's space."""
        self.site = SiteConfig.model_validate(site)
        self.units.add(self.site, router_id)
        return True

    async def remove_router(self, router_id: str) -> bool:
        """Stop one router; False if it is not here."""
        return await self.units.remove(router_id)

    async def _hops(self) -> None:
        while True:
            await sleep_to_next_hop(self.site.model.hop_s)
            windows = self.units.cut()
            if not windows:
                continue
            if self._in_flight < self.max_in_flight:
                self._launch(windows)
                continue
            if self._pending is not None:
                self.units.dropped(self._pending)
            self._pending = windows

    def _launch(self, windows: list[CsiWindow]) -> None:
        self._in_flight += 1
        task = asyncio.get_running_loop().create_task(self._send(windows))
        self._sending.add(task)  # a task nobody references may be collected mid-flight
        task.add_done_callback(self._sending.discard)

    async def _send(self, windows: list[CsiWindow]) -> None:
        try:
            await self.space.submit_windows.remote(windows)
            self.units.sent(windows, True)
        except Exception as exc:
            self.units.sent(windows, False, str(exc))
            logger.warning("routers %s: handing the hop to the space failed: %s",
                           ",".join(w.router_id for w in windows), exc)
        finally:
            self._in_flight -= 1
            if self._pending is not None and self._in_flight < self.max_in_flight:
                windows, self._pending = self._pending, None
                self._launch(windows)

    async def routers_status(self) -> list[dict[str, Any]]:
        """Every hosted router's status."""
        return self.units.status()

    async def ping(self) -> bool:
        """Liveness check."""
        return True


RouterGroupActor = ray.remote(RouterGroupHost)
