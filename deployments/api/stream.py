"""/ws/v1/stream: the seed's WebSocket protocol over the result bus.

One bus subscription per gateway replica feeds every client of that replica. Each
client has a bounded queue: a slow client loses its own oldest pose frames (counted and
reported to it), never anyone else's; events are not dropped here (the bus reports
gaps as ``events_missed``).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import time
import uuid
from collections import deque
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from deployments.api.pose import filter_persons
from deployments.api.state import GatewayState, get_state
from invispose.bus import EVENT_TOPIC, POSE_TOPIC

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
CLIENT_QUEUE = 32  # messages waiting for one client; pose frames beyond it drop oldest
MAX_MESSAGE_BYTES = 64 * 1024
FILTER_KEYS = {"zone_id", "min_confidence", "person_id", "space_id"}


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


class ClientSession:
    """One connected client: subscriptions with filters, a bounded queue, counters."""

    def __init__(self, state: GatewayState, websocket: WebSocket) -> None:
        self.state = state
        self.ws = websocket
        self.client_id = uuid.uuid4().hex[:12]
        self.filters: dict[str, dict[str, Any]] = {}  # topic -> filters
        self.max_fps: float | None = None
        self.queue: deque[tuple[str, str, float | None]] = deque()  # (kind, text, t_end_s)
        self.wakeup = asyncio.Event()
        self.dropped = 0
        self.dropped_reported = 0
        self.sent = 0
        self._last_pose_s = 0.0

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
        now = time.monotonic()
        if self.max_fps and now - self._last_pose_s < 1.0 / self.max_fps:
            return
        self._last_pose_s = now
        key = (  # the cache lives for one bus message, so equal filters share one JSON text
            filters.get("zone_id"),
            filters.get("min_confidence"),
            filters.get("person_id"),
        )
        text = cache.get(key)
        if text is None:
            frame = message["frame"]
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
        if len(self.queue) >= CLIENT_QUEUE:
            for i, (kind, _, _) in enumerate(self.queue):
                if kind == "pose":
                    del self.queue[i]
                    self.dropped += 1
                    break
        self.queue.append(("pose", text, float(message.get("t_end_s") or 0.0)))
        self.wakeup.set()

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
        self.queue.append(("event", json.dumps(payload), None))  # events are never dropped
        self.wakeup.set()

    # -- to the socket -------------------------------------------------------------------

    async def send_json(self, payload: dict[str, Any]) -> None:
        """Queue one control message (only the sender task writes to the socket)."""
        self.queue.append(("control", json.dumps(payload), None))
        self.wakeup.set()

    async def sender(self) -> None:
        """Drain the queue into the socket until the connection ends."""
        while True:
            await self.wakeup.wait()
            self.wakeup.clear()
            if self.dropped > self.dropped_reported:
                notice = {
                    "type": "frames_dropped",
                    "count": self.dropped - self.dropped_reported,
                    "total": self.dropped,
                }
                self.dropped_reported = self.dropped
                await self.ws.send_text(json.dumps(notice))  # ahead of the frames that remain
            while self.queue:
                kind, text, t_end_s = self.queue.popleft()
                await self.ws.send_text(text)
                self.sent += 1
                if kind == "pose" and t_end_s:
                    self.state.e2e_ms.append((time.time() - t_end_s) * 1e3)

    # -- from the socket -----------------------------------------------------------------

    async def handle(self, raw: str) -> None:
        """One client message: subscribe, unsubscribe, ping or configure."""
        if len(raw) > MAX_MESSAGE_BYTES:
            await self.error(f"message larger than {MAX_MESSAGE_BYTES} bytes")
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
            await self.error(f"unknown message type {kind!r}")

    async def _subscribe(self, data: dict[str, Any]) -> None:
        topic = data.get("topic")
        filters = data.get("filters") or {}
        if topic not in WS_TOPICS:
            await self.error(f"unknown topic {topic!r}; topics: {', '.join(WS_TOPICS)}")
            return
        if not isinstance(filters, dict) or set(filters) - FILTER_KEYS:
            await self.error(f"filters must be an object with keys {sorted(FILTER_KEYS)}")
            return
        conf = filters.get("min_confidence")
        if conf is not None and (isinstance(conf, bool) or not isinstance(conf, int | float)):
            await self.error("min_confidence must be a number")
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
                isinstance(fps, bool) or not isinstance(fps, int | float) or fps <= 0
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
        self.malformed = 0
        state.listeners.add(self.dispatch)
        state.clients = self

    def dispatch(self, topic: str, message: dict[str, Any]) -> None:
        """Offer one bus message to every client (JSON shared between equal filters)."""
        cache: dict[Any, str] = {}
        for client in list(self.clients.values()):
            client.offer(topic, message, cache)

    def dropped(self) -> int:
        """Pose frames dropped for slow clients, all clients together."""
        return sum(c.dropped for c in self.clients.values())


@router.websocket("/ws/v1/stream")
async def stream(websocket: WebSocket) -> None:
    """The seed's real-time stream: connection, subscribe/unsubscribe, ping, configure."""
    state = await get_state()
    registry: ClientRegistry = state.clients
    await websocket.accept()
    client = ClientSession(state, websocket)
    registry.clients[client.client_id] = client
    await client.send_json(
        {
            "type": "connection",
            "status": "connected",
            "client_id": client.client_id,
            "server_time": now_iso(),
        }
    )
    sender = asyncio.get_running_loop().create_task(client.sender())
    try:
        while True:
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
    except WebSocketDisconnect:
        pass
    finally:
        registry.clients.pop(client.client_id, None)
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await sender
