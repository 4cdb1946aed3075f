"""/ws/v1/stream: the seed's WebSocket protocol over the result bus.

One bus subscription per gateway replica feeds every client of that replica. Everything a
client can make the gateway hold is bounded (``serve.websocket`` in the config): its queue
of pose frames (the oldest drop, the client is told how many), its queue of events and
replies (the oldest event drops and the client is told the first id it missed, so it can
read them back; replies beyond the bound drop), its message size and rate, idle time
without a subscription, and connections per address. A client that fails while frames
are fanned out is closed with 1011; no failure of one client reaches another.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import math
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from deployments.api import metrics
from deployments.api.auth import GatewaySecurity
from deployments.api.pose import filter_persons
from deployments.api.state import GatewayState, current_state
from invispose.bus import EVENT_TOPIC, POSE_TOPIC, pose_frame
from invispose.config import WebSocketConfig
from invispose.security import (
    STREAM_SUBSCRIBE,
    AuthError,
    Principal,
    RateLimited,
    ScopeError,
    origin_allowed,
    websocket_credential,
)

logger = logging.getLogger(__name__)

router = APIRouter(tags=["stream"])

WS_TOPICS = ("pose_updates", "system_alerts", "zone_events", "person_tracking")
ZONE_EVENTS = {
    "person.entered_zone",
    "person.left_zone",
    "alert.high_occupancy",
    "alert.restricted_zone_breach",
}
PERSON_EVENTS = {
    "person.detected",
    "person.lost",
    "person.fall_detected",
    "person.activity_detected",
}
ALERT_PREFIXES = ("alert.", "system.", "router.")
CLIENT_QUEUE = WebSocketConfig().queue_frames  # default pose frames waiting per client
STRING_FILTERS = ("zone_id", "person_id", "space_id")
FILTER_KEYS = {*STRING_FILTERS, "min_confidence"}
CLOSE_POLICY, CLOSE_INTERNAL, CLOSE_TRY_LATER = 1008, 1011, 1013
CLOSE_AUTH, CLOSE_FORBIDDEN, CLOSE_RATE = 4001, 4003, 4029  # 4000+: the application's own
# websocket_messages_total children, bound once: a label lookup per frame is not free
SENT = {kind: metrics.WS_MESSAGES.labels("out", name) for kind, name in
        (("pose", "pose_update"), ("event", "event"), ("control", "control"))}


def now_iso() -> str:
    """UTC now, ISO 8601."""
    return dt.datetime.now(dt.UTC).isoformat()


def topics_of_event(event_type: str) -> list[str]:
    """The WebSocket topics an event is sent on."""
    topics = []
    if event_type in ZONE_EVENTS:
        topics.append("zone_events")
    if event_type in PERSON_EVENTS:
        topics.append("person_tracking")
    if event_type.startswith(ALERT_PREFIXES) or event_type == "person.fall_detected":
        topics.append("system_alerts")
    return topics


def filter_problem(filters: Any) -> str | None:
    """Why ``filters`` is not a valid subscription filter object (None: it is)."""
    if not isinstance(filters, dict) or set(filters) - FILTER_KEYS:
        return f"filters must be an object with keys {sorted(FILTER_KEYS)}"
    for key in STRING_FILTERS:
        if filters.get(key) is not None and not isinstance(filters[key], str):
            return f"{key} must be a string or null"
    conf = filters.get("min_confidence")
    if conf is not None and (
        isinstance(conf, bool) or not isinstance(conf, int | float)
        or not (math.isfinite(conf) and 0.0 <= conf <= 1.0)
    ):
        return "min_confidence must be a number from 0 to 1"
    return None


class ClientSession:
    """One connected client: subscriptions with filters, bounded queues, counters."""

    def __init__(
        self, state: GatewayState, websocket: WebSocket,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.state = state
        self.ws = websocket
        self.limits: WebSocketConfig = state.site.serve.websocket
        self.clock = clock
        self.client_id = uuid.uuid4().hex[:12]
        self.filters: dict[str, dict[str, Any]] = {}  # topic -> filters
        self.max_fps: float | None = None
        self.queue: deque[tuple[str, str, float | None]] = deque()  # (kind, text, t_end_s)
        self.n_poses = 0  # pose frames in the queue; the rest are events and replies
        self.wakeup = asyncio.Event()
        self.dropped = 0  # pose frames
        self.dropped_reported = 0
        self.events_dropped = 0
        self.first_missed_id: Any = None  # oldest dropped event not yet reported
        self.events_missed_count = 0
        self.replies_dropped = 0
        self.refused = 0  # messages over the rate limit
        self.sent = 0
        self.closing: tuple[int, str] | None = None
        self.last_message_s = clock()
        self._tokens = float(self.limits.message_burst)
        self._tokens_s = self.last_message_s
        self._limit_notice_s = -math.inf
        self._last_pose_s = -math.inf

    # -- from the bus (sync, on the event loop) ----------------------------------------

    def offer(self, topic: str, message: dict[str, Any], cache: dict[Any, str]) -> None:
        """Queue what this client should get of one bus message."""
        if topic == POSE_TOPIC and "pose_updates" in self.filters:
            self._offer_pose(message, cache)
        elif topic == EVENT_TOPIC:
            self._offer_event(message)

    def _offer_pose(self, message: dict[str, Any], cache: dict[Any, str]) -> None:
        filters = self.filters["pose_updates"]
        if filters.get("space_id") not in (None, message.get("space_id")):
            return
        now = self.clock()
        if self.max_fps and now - self._last_pose_s < 1.0 / self.max_fps:
            return
        self._last_pose_s = now
        key = (  # the cache lives for one bus message, so equal filters share one JSON text
            filters.get("zone_id"),
            filters.get("min_confidence"),
            filters.get("person_id"),
        )
        text = cache.get(key)
        if text is None and key == (None, None, None):
            text = message["text"]  # encoded once, where the frame was made
        if text is None:
            frame = pose_frame(message)
            persons = filter_persons(
                frame["persons"],
                zone_id=filters.get("zone_id"),
                min_confidence=float(filters.get("min_confidence") or 0.0),
                person_id=filters.get("person_id"),
            )
            text = json.dumps(
                {
                    "type": "pose_update",
                    "topic": "pose_updates",
                    "space_id": message.get("space_id"),
                    "timestamp": frame["timestamp"],
                    "frame_id": frame["frame_id"],
                    "persons": persons,
                    "processing_time_ms": frame["processing_time_ms"],
                    "metadata": frame.get("metadata", {}),
                }
            )
            cache[key] = text
        if self.n_poses >= self.limits.queue_frames and self._drop_oldest("pose"):
            self.dropped += 1
        self.queue.append(("pose", text, float(message.get("t_end_s") or 0.0)))
        self.n_poses += 1
        self.wakeup.set()

    def _drop_oldest(self, kind: str) -> str | None:
        """Remove the oldest queued message of ``kind``; its text (None: there is none)."""
        for i, (k, text, _) in enumerate(self.queue):
            if k == kind:
                del self.queue[i]
                self.n_poses -= kind == "pose"
                return text
        return None

    def _offer_event(self, event: dict[str, Any]) -> None:
        event_type = str(event.get("type"))
        if event_type == "events_missed":
            wanted = [
                t for t in ("system_alerts", "zone_events", "person_tracking") if t in self.filters
            ]
            if wanted:
                self._push_event(
                    {"type": "events_missed", "first_missed_id": event.get("first_missed_id")}
                )
            return
        for topic in topics_of_event(event_type):
            filters = self.filters.get(topic)
            if filters is None:
                continue
            data = event.get("data") or {}
            if filters.get("person_id") not in (None, data.get("person_id")):
                continue
            if filters.get("zone_id") not in (None, data.get("zone_id")):
                continue
            kind = {
                "zone_events": "zone_event",
                "person_tracking": "person_update",
                "system_alerts": "system_alert",
            }[topic]
            self._push_event(
                {
                    "type": kind,
                    "topic": topic,
                    "event": event_type,
                    "event_id": event.get("id"),
                    "timestamp": event.get("timestamp"),
                    "space_id": event.get("space_id"),
                    "data": data,
                }
            )

    def _push_event(self, payload: dict[str, Any]) -> None:
        if len(self.queue) - self.n_poses >= self.limits.queue_messages:
            old = self._drop_oldest("event")
            if old is not None:
                self.events_dropped += 1
                self.events_missed_count += 1
                if self.first_missed_id is None:
                    self.first_missed_id = json.loads(old).get("event_id")
        self.queue.append(("event", json.dumps(payload), None))
        self.wakeup.set()

    # -- to the socket -------------------------------------------------------------------

    async def send_json(self, payload: dict[str, Any]) -> None:
        """Queue one control message (only the sender task writes to the socket)."""
        if len(self.queue) - self.n_poses >= self.limits.queue_messages:
            self.replies_dropped += 1  # the client sends without reading its replies
            return
        self.queue.append(("control", json.dumps(payload), None))
        self.wakeup.set()

    def fail(self, code: int, reason: str) -> None:
        """Close the connection from the sender task (which owns the socket)."""
        self.closing = (code, reason)
        self.wakeup.set()

    def idle(self) -> bool:
        """A client with no subscription that has sent nothing for ``idle_s``."""
        return not self.filters and self.clock() - self.last_message_s >= self.limits.idle_s

    async def sender(self) -> None:
        """Drain the queue into the socket until the connection ends or must close."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wakeup.wait(), timeout=self.limits.idle_s / 4)
            self.wakeup.clear()
            if self.closing is None and self.idle():
                self.closing = (CLOSE_POLICY, "idle: no subscription and no message")
            if self.closing is not None:
                with contextlib.suppress(Exception):  # the peer may be gone already
                    await self.ws.close(code=self.closing[0], reason=self.closing[1])
                return
            if self.dropped > self.dropped_reported:
                notice = {
                    "type": "frames_dropped",
                    "count": self.dropped - self.dropped_reported,
                    "total": self.dropped,
                }
                self.dropped_reported = self.dropped
                await self.ws.send_text(json.dumps(notice))  # ahead of the frames that remain
            if self.events_missed_count:
                notice = {
                    "type": "events_missed",
                    "count": self.events_missed_count,
                    "first_missed_id": self.first_missed_id,
                }
                self.events_missed_count, self.first_missed_id = 0, None
                await self.ws.send_text(json.dumps(notice))
            while self.queue and self.closing is None:
                kind, text, t_end_s = self.queue.popleft()
                self.n_poses -= kind == "pose"
                await self.ws.send_text(text)
                self.sent += 1
                SENT[kind].inc()
                if kind == "pose" and t_end_s:
                    self.state.e2e_ms.append((time.time() - t_end_s) * 1e3)

    # -- from the socket -----------------------------------------------------------------

    def _take_token(self) -> bool:
        """Token bucket: ``message_burst`` at once, ``messages_per_s`` sustained."""
        now = self.clock()
        self._tokens = min(
            float(self.limits.message_burst),
            self._tokens + max(0.0, now - self._tokens_s) * self.limits.messages_per_s,
        )
        self._tokens_s = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True

    async def handle(self, raw: str) -> None:
        """One client message: subscribe, unsubscribe, ping or configure."""
        self.last_message_s = self.clock()
        if not self._take_token():
            self.refused += 1
            if self.last_message_s - self._limit_notice_s >= 1.0:  # one notice a second
                self._limit_notice_s = self.last_message_s
                await self.error(
                    f"rate limit: at most {self.limits.messages_per_s} messages/s "
                    f"(bursts of {self.limits.message_burst}); messages over it are dropped"
                )
            return
        if len(raw) > self.limits.max_message_bytes:
            await self.error(f"message larger than {self.limits.max_message_bytes} bytes")
            return
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            await self.error(f"invalid JSON: {exc.msg} at position {exc.pos}")
            return
        if not isinstance(data, dict):
            await self.error("a message must be a JSON object")
            return
        kind = data.get("type")
        metrics.message_in(kind)
        if kind == "ping":
            await self.send_json({"type": "pong", "timestamp": now_iso()})
        elif kind == "subscribe":
            await self._subscribe(data)
        elif kind == "unsubscribe":
            topic = data.get("topic")
            self.filters.pop(str(topic), None)
            await self.send_json({"type": "subscription", "topic": topic, "status": "unsubscribed"})
        elif kind == "configure":
            await self._configure(data.get("config"))
        else:
            await self.error(f"unknown message type {str(kind)[:64]!r}")

    async def _subscribe(self, data: dict[str, Any]) -> None:
        topic = data.get("topic")
        filters = data.get("filters") or {}
        if topic not in WS_TOPICS:
            await self.error(f"unknown topic {str(topic)[:64]!r}; topics: {', '.join(WS_TOPICS)}")
            return
        problem = filter_problem(filters)
        if problem is not None:
            await self.error(problem)
            return
        self.filters[str(topic)] = dict(filters)
        await self.send_json(
            {"type": "subscription", "topic": topic, "status": "subscribed", "filters": filters}
        )

    async def _configure(self, config: Any) -> None:
        if not isinstance(config, dict):
            await self.error("configure needs a 'config' object")
            return
        if "max_fps" in config:
            fps = config["max_fps"]
            if fps is not None and (
                isinstance(fps, bool) or not isinstance(fps, int | float)
                or not math.isfinite(fps) or fps <= 0
            ):
                await self.error("max_fps must be a positive number or null")
                return
            self.max_fps = float(fps) if fps is not None else None
        await self.send_json({"type": "configured", "config": {"max_fps": self.max_fps}})

    async def error(self, message: str) -> None:
        """Tell the client what was wrong; the connection stays open."""
        await self.send_json({"type": "error", "error": message, "timestamp": now_iso()})


class ClientRegistry:
    """The replica's connected clients, fed by the bus pump."""

    def __init__(self, state: GatewayState) -> None:
        self.clients: dict[str, ClientSession] = {}
        self.limits: WebSocketConfig = state.site.serve.websocket
        self.per_peer: Counter[str] = Counter()
        self.malformed = 0
        self.failures = 0
        self.refused_connections = 0
        self.origin_refused = 0  # upgrades from a web page of a foreign origin
        self.auth_refused = 0  # upgrades without a valid credential, scope or rate
        self.auth_closed = 0  # sessions closed when their credential lapsed
        self.gone: Counter[str] = Counter()  # counters of clients that have disconnected
        state.listeners.add(self.dispatch)
        state.clients = self

    def dispatch(self, topic: str, message: dict[str, Any]) -> None:
        """Offer one bus message to every client (JSON shared between equal filters)."""
        cache: dict[Any, str] = {}
        for client in list(self.clients.values()):
            try:
                client.offer(topic, message, cache)
            except Exception:
                self.failures += 1
                logger.exception("gateway: client %s failed on a %s message; closing it",
                                 client.client_id, topic)
                self.remove(client)
                client.fail(CLOSE_INTERNAL, "internal error")

    def admit(self, peer: str) -> bool:
        """Count a new connection from ``peer``; False past ``max_per_peer``."""
        if self.per_peer[peer] >= self.limits.max_per_peer:
            self.refused_connections += 1
            return False
        self.per_peer[peer] += 1
        return True

    def release(self, peer: str) -> None:
        """A connection from ``peer`` ended."""
        self.per_peer[peer] -= 1
        if self.per_peer[peer] <= 0:
            del self.per_peer[peer]

    def remove(self, client: ClientSession) -> None:
        """Forget a client, keeping its counters in the replica's totals."""
        if self.clients.pop(client.client_id, None) is not None:
            self.gone.update(self._counters(client))

    @staticmethod
    def _counters(client: ClientSession) -> dict[str, int]:
        return {
            "frames_dropped": client.dropped,
            "events_dropped": client.events_dropped,
            "replies_dropped": client.replies_dropped,
            "messages_refused": client.refused,
        }

    def stats(self) -> dict[str, int]:
        """Counters of this replica's clients, those gone included."""
        totals = Counter(self.gone.copy())
        for client in list(self.clients.values()):  # may be read from another thread
            totals.update(self._counters(client))
        return {
            "clients": len(self.clients),
            "frames_dropped": totals["frames_dropped"],
            "events_dropped": totals["events_dropped"],
            "replies_dropped": totals["replies_dropped"],
            "messages_refused": totals["messages_refused"],
            "malformed": self.malformed,
            "client_failures": self.failures,
            "connections_refused": self.refused_connections,
            "origin_refused": self.origin_refused,
            "auth_refused": self.auth_refused,
            "auth_closed": self.auth_closed,
        }


async def _admit(
    websocket: WebSocket, guard: GatewaySecurity, registry: ClientRegistry, peer: str
) -> Principal | None:
    """Check the upgrade's Origin and credential; accept, or refuse and return None.

    A page from a foreign Origin is refused before the handshake completes (HTTP 403);
    a missing or bad credential closes with 4001, a credential without
    ``stream:subscribe`` with 4003, too many attempts with 4029.
    """
    headers = websocket.headers
    if not origin_allowed(headers.get("origin"), headers.get("host"),
                          guard.site.api.cors.allow_origins):
        registry.origin_refused += 1
        await websocket.close(code=CLOSE_POLICY)  # before accept: the handshake gets 403
        return None
    protocols = [p.strip() for p in headers.get("sec-websocket-protocol", "").split(",")
                 if p.strip()]
    subprotocol = None
    try:
        credential, subprotocol = websocket_credential(
            headers.get("authorization"), websocket.query_params.get("token"), protocols)
        principal = await guard.principal(credential, peer)
        guard.check_scope(principal, STREAM_SUBSCRIBE)
        await guard.limit(principal, peer, streaming=True)
    except (AuthError, ScopeError, RateLimited) as exc:
        registry.auth_refused += 1
        code = (CLOSE_AUTH if isinstance(exc, AuthError)
                else CLOSE_FORBIDDEN if isinstance(exc, ScopeError) else CLOSE_RATE)
        await websocket.accept(subprotocol=subprotocol)
        await websocket.close(code=code, reason=str(exc)[:120])
        return None
    await websocket.accept(subprotocol=subprotocol)
    return principal


@router.websocket("/ws/v1/stream")
async def stream(websocket: WebSocket) -> None:
    """The seed's real-time stream: connection, subscribe/unsubscribe, ping, configure."""
    # the replica's own stream server brings its own state (deployments/stream_server.py)
    state = getattr(websocket.app.state, "gateway", None) or current_state()
    registry: ClientRegistry = state.clients
    peer = websocket.client.host if websocket.client else "unknown"
    guard = state.security
    principal = await _admit(websocket, guard, registry, peer)
    if principal is None:
        return
    state.ensure_pump()  # from this replica's loop, once someone may read the frames
    if not registry.admit(peer):
        await websocket.close(
            code=CLOSE_TRY_LATER,
            reason=f"more than {registry.limits.max_per_peer} connections from {peer}",
        )
        return
    client = ClientSession(state, websocket)
    registry.clients[client.client_id] = client
    metrics.WS_ACTIVE.inc()
    await client.send_json(  # queued: the sender task writes it first
        {
            "type": "connection",
            "status": "connected",
            "client_id": client.client_id,
            "server_time": now_iso(),
        }
    )
    sender = asyncio.get_running_loop().create_task(client.sender())

    async def credential_lapsed(exc: AuthError) -> None:
        registry.auth_closed += 1
        client.fail(CLOSE_AUTH, exc.detail[:120])

    watcher = None
    if guard.enabled:
        watcher = asyncio.get_running_loop().create_task(
            guard.watch(principal, credential_lapsed))
    try:
        while not sender.done():
            # reading keeps disconnects visible even for push-only clients
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
            text = message.get("text")
            if text is None:
                registry.malformed += 1
                await client.error("binary messages are not supported; send JSON text")
                continue
            await client.handle(text)
    except (WebSocketDisconnect, RuntimeError):  # RuntimeError: received after our close
        pass
    finally:
        registry.remove(client)
        registry.release(peer)
        metrics.WS_ACTIVE.dec()
        if watcher is not None:
            watcher.cancel()
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await sender
