"""/ws/v1/stream client sessions: filters, bounded queues, malformed input (no Ray)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from deployments.api.state import GatewayState
from deployments.api.stream import CLIENT_QUEUE, ClientRegistry, ClientSession
from invispose.config import parse_config

SITE = parse_config({"spaces": [{"id": "lab", "size_m": [6, 5, 3]}]}, env={})


class RecordingSocket:
    """The peer end of a WebSocket: records what the server sent."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def send_text(self, text: str) -> None:
        self.sent.append(json.loads(text))


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
    return {"topic": "pose", "space_id": "lab", "t_end_s": 0.0, "frame": frame}


def session() -> tuple[ClientRegistry, ClientSession, RecordingSocket]:
    state = GatewayState(SITE)
    registry = ClientRegistry(state)
    sock = RecordingSocket()
    client = ClientSession(state, sock)  # type: ignore[arg-type]
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
