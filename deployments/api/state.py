"""What the Gateway's routes share: actor handles, the bus pump, latest frames, metrics."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np
import ray

from actors.common import BUS_NAME, NAMESPACE, STORE_NAME, SUPERVISOR_NAME
from invispose.bus import EVENT_TOPIC, POSE_TOPIC
from invispose.config import SiteConfig

logger = logging.getLogger(__name__)

Listener = Callable[[str, dict[str, Any]], None]
RESUBSCRIBE_MAX_S = 5.0
BUS_AHEAD = 8  # bus batches in flight to this replica, unread, at most


class ComponentUnavailable(Exception):
    """A named actor the gateway needs does not exist (yet)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"{name} is not running")
        self.name = name


class GatewayState:
    """Per-replica state: one bus subscription fanned out to this replica's clients."""

    def __init__(self, site: SiteConfig) -> None:
        self.site = site
        self.started_s = time.time()
        self.latest: dict[str, dict[str, Any]] = {}  # space_id -> pose message
        self.listeners: set[Listener] = set()
        self.frames_in = 0
        self.e2e_ms: deque[float] = deque(maxlen=2000)  # newest packet -> WebSocket send
        self.frame_times: deque[float] = deque(maxlen=400)
        self.clients: Any = None  # the ClientRegistry of /ws/v1/stream
        self.estimator: Any = None  # PoseEstimator handle
        self.stream_server: Any = None  # the replica's own /ws/v1/stream server, if any
        self.security: Any = None  # its GatewaySecurity (deployments/api/auth.py)
        self._pump: asyncio.Task[None] | None = None
        self._handles: dict[str, Any] = {}

    # -- actor handles (looked up lazily: they restart independently) ------------------

    def actor(self, name: str) -> Any:
        """A named InvisPose actor; the handle is looked up once (Ray restarts the actor
        behind it) and forgotten by ``forget_actors`` when a call through it fails."""
        handle = self._handles.get(name)
        if handle is None:
            try:
                handle = self._handles[name] = ray.get_actor(name, namespace=NAMESPACE)
            except ValueError as exc:  # not created yet, or gone with the system
                raise ComponentUnavailable(name) from exc
        return handle

    def forget_actors(self) -> None:
        """Look every actor up again on next use (after a failed call)."""
        self._handles.clear()

    @property
    def store(self) -> Any:
        """The StoreActor."""
        return self.actor(STORE_NAME)

    @property
    def bus(self) -> Any:
        """The ResultBus actor."""
        return self.actor(BUS_NAME)

    @property
    def supervisor(self) -> Any:
        """The Supervisor actor."""
        return self.actor(SUPERVISOR_NAME)

    # -- bus pump ------------------------------------------------------------------------

    def ensure_pump(self) -> None:
        """Start the bus subscription once per replica (from inside the event loop)."""
        if self._pump is None or self._pump.done():
            self._pump = asyncio.get_running_loop().create_task(self._run_pump())

    async def _run_pump(self) -> None:
        backoff_s = 0.1
        while True:
            gen = None
            try:
                # backpressure: the bus pauses at BUS_AHEAD unread batches instead of
                # filling the object store; its own bounded queues then drop (counted)
                gen = self.bus.subscribe.options(
                    _generator_backpressure_num_objects=BUS_AHEAD
                ).remote([POSE_TOPIC, EVENT_TOPIC])
                async for ref in gen:
                    batch = await ref
                    backoff_s = 0.1
                    for message in batch:
                        self._dispatch(message)
            except asyncio.CancelledError:
                if gen is not None:
                    with contextlib.suppress(Exception):
                        ray.cancel(gen)
                raise
            except Exception as exc:
                logger.warning("gateway: bus subscription lost (%s); resubscribing", exc)
            await asyncio.sleep(backoff_s)
            backoff_s = min(backoff_s * 2, RESUBSCRIBE_MAX_S)

    def _dispatch(self, message: dict[str, Any]) -> None:
        topic = str(message.get("topic"))
        if topic == POSE_TOPIC:
            self.latest[str(message.get("space_id"))] = message
            self.frames_in += 1
            self.frame_times.append(time.time())
        for listener in list(self.listeners):
            try:
                listener(topic, message)
            except Exception:
                logger.exception("gateway: listener failed")

    def stop(self) -> None:
        """Cancel the bus subscription."""
        if self._pump is not None:
            self._pump.cancel()

    # -- metrics -------------------------------------------------------------------------

    def fps(self) -> float:
        """Pose frames per second received over the last few seconds."""
        now = time.time()
        recent = [t for t in self.frame_times if now - t <= 5.0]
        if len(recent) < 2:
            return 0.0
        return (len(recent) - 1) / max(recent[-1] - recent[0], 1e-6)

    def latency_percentiles(self) -> dict[str, float]:
        """End-to-end latency (newest packet → WebSocket send) percentiles, ms, over this
        replica's clients: those through the proxy and those of its own stream server."""
        samples = [*self.e2e_ms.copy()]  # deque.copy is atomic: the stream thread appends
        server = self.stream_server
        if server is not None and server.state is not None:
            samples += server.state.e2e_ms.copy()
        if not samples:
            return {"p50": 0.0, "p95": 0.0, "p99": 0.0, "samples": 0}
        values = np.array(samples)
        p50, p95, p99 = np.percentile(values, [50, 95, 99])
        return {"p50": float(p50), "p95": float(p95), "p99": float(p99), "samples": len(values)}


# Serve pickles the FastAPI app into the replica, so per-replica state lives in this
# module (imported by reference there) rather than on the app object.
_current: GatewayState | None = None


def install(state: GatewayState) -> None:
    """Make ``state`` the replica's GatewayState (called by the Gateway's constructor)."""
    global _current
    _current = state


def installed_state() -> GatewayState | None:
    """The replica's GatewayState, or None outside a Gateway."""
    return _current


def current_state() -> GatewayState:
    """The replica's GatewayState."""
    if _current is None:
        raise RuntimeError("the Gateway has not been constructed in this process")
    return _current


async def get_state() -> GatewayState:
    """FastAPI dependency: the replica's GatewayState, its bus pump running.

    Async, so FastAPI calls it on the event loop (not in a worker thread) and the pump
    task lands on the loop that serves the requests.
    """
    state = current_state()
    state.ensure_pump()
    return state
