"""ResultBus: topic fan-out of pose frames, events and status to streaming subscribers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import ray

from invispose.bus import POSE_TOPIC, Fanout, Message

HEARTBEAT_S = 1.0  # an idle subscription yields [] this often, so dead readers are noticed


class BusHost:
    """Holds a ``Fanout`` and the latest pose frame of every space."""

    def __init__(self, pose_capacity: int = 64, event_capacity: int = 4096) -> None:
        self.fanout = Fanout(pose_capacity=pose_capacity, event_capacity=event_capacity)
        self.latest: dict[str, Message] = {}

    async def publish(self, topic: str, messages: list[Message]) -> None:
        """Fan ``messages`` out on ``topic`` (events must already be stored)."""
        for message in messages:
            if topic == POSE_TOPIC:
                self.latest[str(message.get("space_id"))] = message
            self.fanout.publish(topic, message)

    async def subscribe(self, topics: list[str] | None = None) -> AsyncIterator[list[Message]]:
        """Batches of messages as they come; [] as a heartbeat when idle."""
        sub = self.fanout.subscribe(set(topics) if topics else None)
        try:
            while True:
                batch = await self.fanout.next_messages(sub.id, timeout_s=HEARTBEAT_S)
                if batch is None:
                    return
                yield batch
        finally:
            self.fanout.unsubscribe(sub.id)

    async def latest_frames(self) -> dict[str, Message]:
        """The newest pose message of every space."""
        return dict(self.latest)

    async def stats(self) -> dict[str, Any]:
        """Subscribers, published counts and per-subscriber drops."""
        return {
            "subscribers": self.fanout.subscribers,
            "published": dict(self.fanout.published),
            "dropped": sum(self.fanout.dropped().values()),
        }

    async def ping(self) -> bool:
        """Liveness check."""
        return True


BusActor = ray.remote(BusHost)
