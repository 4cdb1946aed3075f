"""Topic fan-out for results: bounded per-subscriber queues, events never dropped.

Pose frames are replaceable: a subscriber's queue drops its oldest frame when full
(counted). Events are not: they are stored before they are published, so a subscriber
whose event queue overflows stops receiving events and is handed one ``events_missed``
notice naming the first event id it did not get; it reads the rest back from the store.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any

POSE_TOPIC = "pose"
EVENT_TOPIC = "events"
TOPICS = frozenset({POSE_TOPIC, EVENT_TOPIC})

Message = dict[str, Any]


def event_message(event: Any) -> Message:
    """An ``Event`` as it travels on the bus."""
    return {"topic": EVENT_TOPIC, **event.model_dump(mode="json")}


def pose_message(space_id: str, frame: Any, t_end_s: float) -> Message:
    """A ``PoseFrame`` as it travels on the bus: encoded once, as the JSON text of the
    WebSocket's ``pose_update`` (the seed's frame fields plus type, topic and space), so
    the gateway forwards it to unfiltered clients as it is."""
    head = json.dumps({"type": "pose_update", "topic": "pose_updates", "space_id": space_id})
    body = frame.model_dump_json()  # '{"timestamp": ..., "frame_id": ..., ...}'
    return {
        "topic": POSE_TOPIC,
        "space_id": space_id,
        "t_end_s": t_end_s,
        "text": head[:-1] + "," + body[1:],
    }


def pose_frame(message: Message) -> dict[str, Any]:
    """The frame fields of a pose message, decoded once per message (and kept in it)."""
    frame = message.get("frame")
    if frame is None:
        frame = json.loads(message["text"])
        for key in ("type", "topic", "space_id"):
            frame.pop(key, None)
        message["frame"] = frame
    return frame  # type: ignore[no-any-return]


@dataclass(slots=True)
class Subscription:
    """One subscriber's queues and counters."""

    id: int
    topics: frozenset[str]
    pose_capacity: int
    event_capacity: int
    poses: deque[Message] = field(default_factory=deque)
    events: deque[Message] = field(default_factory=deque)
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    dropped_poses: int = 0
    missed_from_event_id: int | None = None  # set when events overflowed
    closed: bool = False

    def drain(self, max_items: int) -> list[Message]:
        """Queued messages, events first (in order), then pose frames (oldest first)."""
        out: list[Message] = []
        while self.events and len(out) < max_items:
            out.append(self.events.popleft())
        if self.missed_from_event_id is not None and not self.events and len(out) < max_items:
            out.append(
                {
                    "topic": EVENT_TOPIC,
                    "type": "events_missed",
                    "first_missed_id": self.missed_from_event_id,
                }
            )
            self.missed_from_event_id = None
        while self.poses and len(out) < max_items:
            out.append(self.poses.popleft())
        if not (self.events or self.poses):
            self.wakeup.clear()
        return out


class Fanout:
    """Publishes messages to every subscriber of their topic without ever blocking."""

    def __init__(self, *, pose_capacity: int = 32, event_capacity: int = 1024) -> None:
        self.pose_capacity = pose_capacity
        self.event_capacity = event_capacity
        self._subs: dict[int, Subscription] = {}
        self._ids = itertools.count(1)
        self.published = {topic: 0 for topic in TOPICS}

    def subscribe(self, topics: set[str] | frozenset[str] | None = None) -> Subscription:
        """A new subscription to ``topics`` (all topics when None)."""
        wanted = frozenset(topics) if topics else TOPICS
        unknown = wanted - TOPICS
        if unknown:
            raise ValueError(f"unknown topics: {', '.join(sorted(unknown))}")
        sub = Subscription(next(self._ids), wanted, self.pose_capacity, self.event_capacity)
        self._subs[sub.id] = sub
        return sub

    def unsubscribe(self, sub_id: int) -> None:
        """Forget a subscription and wake its reader so it can finish."""
        sub = self._subs.pop(sub_id, None)
        if sub is not None:
            sub.closed = True
            sub.wakeup.set()

    @property
    def subscribers(self) -> int:
        """Live subscriptions."""
        return len(self._subs)

    def dropped(self) -> dict[int, int]:
        """Pose frames dropped per subscription."""
        return {sid: sub.dropped_poses for sid, sub in self._subs.items()}

    def publish(self, topic: str, message: Message) -> None:
        """Queue ``message`` for every subscriber of ``topic``."""
        self.published[topic] = self.published.get(topic, 0) + 1
        for sub in self._subs.values():
            if topic not in sub.topics:
                continue
            if topic == EVENT_TOPIC:
                if sub.missed_from_event_id is not None:
                    continue  # already lagging: the reader catches up from the store
                if len(sub.events) >= sub.event_capacity:
                    sub.missed_from_event_id = int(message.get("id") or 0)
                    continue
                sub.events.append(message)
            else:
                if len(sub.poses) >= sub.pose_capacity:
                    sub.poses.popleft()
                    sub.dropped_poses += 1
                sub.poses.append(message)
            sub.wakeup.set()

    async def next_messages(
        self, sub_id: int, *, max_items: int = 64, timeout_s: float | None = None
    ) -> list[Message] | None:
        """Wait for messages; [] on timeout, None once the subscription is closed."""
        sub = self._subs.get(sub_id)
        if sub is None:
            return None
        if not (sub.events or sub.poses or sub.missed_from_event_id is not None):
            try:
                await asyncio.wait_for(sub.wakeup.wait(), timeout_s)
            except TimeoutError:
                return []
        if sub.closed:
            return None
        return sub.drain(max_items)
