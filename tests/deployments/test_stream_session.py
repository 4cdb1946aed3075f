"""/ws/v1/stream client sessions: filters, bounded queues, malformed input (no Ray)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

from deployments.api.state import GatewayState
from deployments.api.stream import CLIENT_QUEUE, ClientRegistry, ClientSession
from invispose.config import parse_config

SITE = parse_config({"spaces": [{"id": "lab", "size_m": [6, 5, 3]}]}, env={})


class RecordingSocket:
    """The peer end of a WebSocket: records what the server sent."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.closed: tuple[int, str] | None = None

    async def send_text(self, text: str) -> None:
        assert self.closed is None, "sent after close"
        self.sent.append(json.loads(text))

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self.closed = (code, reason)


def person(pid: str, zone: str | None, conf: float) -> dict[str, Any]:
    kps = [{"id": i, "x": 0.5, "y": 0.5, "confidence": conf, "name": f"k{i}"} for i in range(17)]
    return {
        "id": pid,
        "keypoints": kps,
        "confidence": conf,
        "bounding_box": {},
        "activity": "standing",
        "zone_id": zone,
    }


def pose(frame_id: int) -> dict[str, Any]:
    frame = {
        "timestamp": "2026-01-01T00:00:00+00:00",
        "frame_id": frame_id,
        "persons": [person("person_1", "sofa", 0.9), person("person_2", "door", 0.3)],
        "processing_time_ms": 12.0,
        "metadata": {},
    }
    # as ``invispose.bus.pose_message`` encodes it: the pose_update text, made once
    text = json.dumps({"type": "pose_update", "topic": "pose_updates", "space_id": "lab",
                       **frame})
    return {"topic": "pose", "space_id": "lab", "t_end_s": 0.0, "text": text}


def session(
    clock: Callable[[], float] = time.monotonic,
) -> tuple[ClientRegistry, ClientSession, RecordingSocket]:
    state = GatewayState(SITE)
    registry = ClientRegistry(state)
    sock = RecordingSocket()
    client = ClientSession(state, sock, clock)  # type: ignore[arg-type]
    registry.clients[client.client_id] = client
    return registry, client, sock


def drain(client: ClientSession) -> None:
    async def run() -> None:
        task = asyncio.create_task(client.sender())
        await asyncio.sleep(0.01)
        task.cancel()

    asyncio.run(run())


def test_filters_reduce_persons_and_events() -> None:
    registry, client, sock = session()
    asyncio.run(
        client.handle(
            json.dumps(
                {"type": "subscribe", "topic": "pose_updates", "filters": {"zone_id": "sofa"}}
            )
        )
    )
    asyncio.run(
        client.handle(
            json.dumps(
                {
                    "type": "subscribe",
                    "topic": "person_tracking",
                    "filters": {"person_id": "person_2"},
                }
            )
        )
    )
    registry.dispatch("pose", pose(1))
    registry.dispatch(
        "events",
        {"topic": "events", "id": 5, "type": "person.detected", "data": {"person_id": "person_1"}},
    )
    registry.dispatch(
        "events",
        {"topic": "events", "id": 6, "type": "person.lost", "data": {"person_id": "person_2"}},
    )
    drain(client)
    kinds = [m["type"] for m in sock.sent]
    assert kinds == ["subscription", "subscription", "pose_update", "person_update"]
    assert [p["id"] for p in sock.sent[2]["persons"]] == ["person_1"]
    assert sock.sent[3]["event"] == "person.lost" and sock.sent[3]["event_id"] == 6


def test_slow_client_drops_oldest_frames_and_is_told() -> None:
    registry, slow, slow_sock = session()
    fast = ClientSession(slow.state, RecordingSocket())  # type: ignore[arg-type]
    registry.clients[fast.client_id] = fast
    for client in (slow, fast):
        client.filters["pose_updates"] = {}
    for frame_id in range(CLIENT_QUEUE + 10):
        registry.dispatch("pose", pose(frame_id))
        if frame_id % 4 == 0:
            drain(fast)  # the fast client keeps up
    drain(fast)
    drain(slow)
    assert slow.dropped == 10 and fast.dropped == 0
    assert slow_sock.sent[0] == {"type": "frames_dropped", "count": 10, "total": 10}
    frame_ids = [m["frame_id"] for m in slow_sock.sent[1:]]
    assert frame_ids == list(range(10, CLIENT_QUEUE + 10))
    fast_ids = [m["frame_id"] for m in fast.ws.sent]  # type: ignore[attr-defined]
    assert fast_ids == list(range(CLIENT_QUEUE + 10))


def test_events_are_never_dropped_for_a_slow_client() -> None:
    registry, client, sock = session()
    client.filters["pose_updates"] = {}
    client.filters["zone_events"] = {}
    for i in range(CLIENT_QUEUE * 2):
        registry.dispatch("pose", pose(i))
        registry.dispatch(
            "events", {"topic": "events", "id": i + 1, "type": "person.entered_zone", "data": {}}
        )
    drain(client)
    zone_ids = [m["event_id"] for m in sock.sent if m["type"] == "zone_event"]
    assert zone_ids == list(range(1, CLIENT_QUEUE * 2 + 1))


def test_malformed_messages_get_errors_and_the_session_goes_on() -> None:
    _, client, sock = session()
    for raw in [
        "{not json",
        "[1, 2]",
        json.dumps({"type": "dance"}),
        json.dumps({"type": "subscribe", "topic": "video"}),
        json.dumps(
            {"type": "subscribe", "topic": "pose_updates", "filters": {"min_confidence": "high"}}
        ),
        json.dumps({"type": "configure", "config": {"max_fps": -1}}),
        "x" * 70_000,
        json.dumps({"type": "ping"}),
    ]:
        asyncio.run(client.handle(raw))
    drain(client)
    kinds = [m["type"] for m in sock.sent]
    assert kinds == ["error"] * 7 + ["pong"]
    assert "invalid JSON" in sock.sent[0]["error"]
    assert "unknown topic" in sock.sent[3]["error"]


def test_max_fps_throttles_pose_updates() -> None:
    registry, client, sock = session()
    asyncio.run(client.handle(json.dumps({"type": "subscribe", "topic": "pose_updates"})))
    asyncio.run(client.handle(json.dumps({"type": "configure", "config": {"max_fps": 1}})))
    for i in range(20):
        registry.dispatch("pose", pose(i))
    drain(client)
    assert [m["type"] for m in sock.sent].count("pose_update") == 1


# -- hostile and careless clients (issue: one client must never reach another) -------------


class Clock:
    """A clock the test moves by hand (rate limits and idle time without sleeping)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_filter_of_the_wrong_type_is_refused_and_others_keep_their_frames() -> None:
    registry, hostile, hostile_sock = session()
    other = ClientSession(hostile.state, RecordingSocket())  # type: ignore[arg-type]
    registry.clients[other.client_id] = other
    for bad in ({"zone_id": []}, {"person_id": {"a": 1}}, {"space_id": 3},
                {"min_confidence": 1.5}, {"min_confidence": float("nan")}):
        asyncio.run(hostile.handle(json.dumps(
            {"type": "subscribe", "topic": "pose_updates", "filters": bad})))
    asyncio.run(other.handle(json.dumps({"type": "subscribe", "topic": "pose_updates"})))
    registry.dispatch("pose", pose(1))
    drain(hostile)
    drain(other)
    assert [m["type"] for m in hostile_sock.sent] == ["error"] * 5
    assert "zone_id must be a string" in hostile_sock.sent[0]["error"]
    assert "min_confidence must be a number from 0 to 1" in hostile_sock.sent[3]["error"]
    assert [m["type"] for m in other.ws.sent] == ["subscription", "pose_update"]  # type: ignore[attr-defined]


def test_a_client_that_fails_in_dispatch_is_closed_and_the_others_go_on() -> None:
    registry, broken, broken_sock = session()
    after = ClientSession(broken.state, RecordingSocket())  # type: ignore[arg-type]
    registry.clients[after.client_id] = after
    broken.filters["pose_updates"] = {"zone_id": []}  # state no validated message can make
    after.filters["pose_updates"] = {}
    for frame_id in range(3):
        registry.dispatch("pose", pose(frame_id))
    drain(broken)
    drain(after)
    assert [m["frame_id"] for m in after.ws.sent] == [0, 1, 2]  # type: ignore[attr-defined]
    assert broken.client_id not in registry.clients
    assert registry.stats()["client_failures"] == 1
    assert broken_sock.closed == (1011, "internal error")


def test_events_for_a_client_that_never_reads_are_bounded_and_it_is_told() -> None:
    registry, client, sock = session()
    client.filters["zone_events"] = {}
    bound = client.limits.queue_messages
    for i in range(bound + 50):
        registry.dispatch(
            "events", {"topic": "events", "id": i + 1, "type": "person.entered_zone", "data": {}}
        )
    assert len(client.queue) <= bound
    drain(client)
    assert sock.sent[0] == {"type": "events_missed", "count": 50, "first_missed_id": 1}
    ids = [m["event_id"] for m in sock.sent[1:]]
    assert ids == list(range(51, bound + 51))
    assert registry.stats()["events_dropped"] == 50


def test_replies_to_a_client_that_never_reads_are_bounded() -> None:
    registry, client, _ = session(clock := Clock())
    for _ in range(5000):
        clock.now += 0.1  # within the message rate: only the queue bound holds it
        asyncio.run(client.handle(json.dumps({"type": "ping"})))
    assert len(client.queue) <= client.limits.queue_messages
    assert registry.stats()["replies_dropped"] == 5000 - client.limits.queue_messages


def test_a_flooding_client_is_rate_limited_with_one_notice_per_second() -> None:
    registry, client, sock = session(clock := Clock())
    limits = client.limits
    for _ in range(limits.message_burst + 100):  # all in the same instant
        asyncio.run(client.handle(json.dumps({"type": "ping"})))
    drain(client)
    kinds = [m["type"] for m in sock.sent]
    assert kinds.count("pong") == limits.message_burst
    assert kinds.count("error") == 1 and "rate limit" in sock.sent[-1]["error"]
    assert registry.stats()["messages_refused"] == 100
    clock.now += 1.0  # the bucket refills at messages_per_s
    for _ in range(limits.messages_per_s):
        asyncio.run(client.handle(json.dumps({"type": "ping"})))
    drain(client)
    pongs = [m["type"] for m in sock.sent].count("pong")
    assert pongs == limits.message_burst + limits.messages_per_s


def test_connections_per_peer_are_bounded() -> None:
    registry, client, _ = session()
    limit = client.limits.max_per_peer
    admitted = [registry.admit("10.0.0.9") for _ in range(limit + 3)]
    assert admitted.count(True) == limit and admitted[-3:] == [False] * 3
    assert registry.admit("10.0.0.10")  # another peer is not affected
    registry.release("10.0.0.9")
    assert registry.admit("10.0.0.9")
    assert registry.stats()["connections_refused"] == 3


def test_a_client_without_subscriptions_goes_idle_and_a_subscriber_does_not() -> None:
    _, client, _ = session(clock := Clock())
    client.last_message_s = clock.now
    clock.now += client.limits.idle_s + 1
    assert client.idle()
    client.filters["pose_updates"] = {}
    assert not client.idle()  # push-only subscribers may stay silent
