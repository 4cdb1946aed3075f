"""Fan-out: pose frames drop oldest per subscriber, events are never silently lost."""

from __future__ import annotations

import asyncio

import pytest

from invispose.bus import EVENT_TOPIC, POSE_TOPIC, Fanout


def test_slow_subscriber_drops_oldest_poses_only_for_itself() -> None:
    bus = Fanout(pose_capacity=3)
    slow = bus.subscribe({POSE_TOPIC})
    fast = bus.subscribe({POSE_TOPIC})
    for i in range(5):
        bus.publish(POSE_TOPIC, {"frame_id": i})
        if i % 1 == 0:
            assert [m["frame_id"] for m in fast.drain(10)] == [i]
    assert [m["frame_id"] for m in slow.drain(10)] == [2, 3, 4]
    assert slow.dropped_poses == 2
    assert fast.dropped_poses == 0


def test_events_overflow_becomes_one_missed_notice_with_the_first_missing_id() -> None:
    bus = Fanout(event_capacity=2)
    sub = bus.subscribe({EVENT_TOPIC})
    for event_id in range(1, 6):
        bus.publish(EVENT_TOPIC, {"id": event_id, "type": "person.detected"})
    got = sub.drain(10)
    assert [m.get("id") for m in got[:2]] == [1, 2]
    assert got[2] == {"topic": EVENT_TOPIC, "type": "events_missed", "first_missed_id": 3}
    # after the notice the subscriber receives new events again
    bus.publish(EVENT_TOPIC, {"id": 6, "type": "person.lost"})
    assert [m["id"] for m in sub.drain(10)] == [6]


def test_topics_are_filtered_and_unknown_topics_rejected() -> None:
    bus = Fanout()
    sub = bus.subscribe({EVENT_TOPIC})
    bus.publish(POSE_TOPIC, {"frame_id": 1})
    assert sub.drain(10) == []
    with pytest.raises(ValueError, match="unknown topics"):
        bus.subscribe({"video"})


def test_next_messages_waits_times_out_and_ends_on_unsubscribe() -> None:
    async def scenario() -> None:
        bus = Fanout()
        sub = bus.subscribe()
        assert await bus.next_messages(sub.id, timeout_s=0.01) == []
        waiter = asyncio.create_task(bus.next_messages(sub.id, timeout_s=5))
        await asyncio.sleep(0)
        bus.publish(POSE_TOPIC, {"frame_id": 7})
        assert [m["frame_id"] for m in await waiter] == [7]
        waiter = asyncio.create_task(bus.next_messages(sub.id, timeout_s=5))
        await asyncio.sleep(0)
        bus.unsubscribe(sub.id)
        assert await waiter is None
        assert bus.subscribers == 0

    asyncio.run(scenario())


def test_a_pose_message_is_the_pose_update_text_and_decodes_to_the_frame() -> None:
    """The frame is encoded once, as the WebSocket's pose_update; decoding it gives the
    frame's JSON fields (what REST serves), and the decoded dict is kept in the message."""
    import datetime as dt
    import json

    import numpy as np

    from invispose.bus import pose_frame, pose_message
    from invispose.schemas import PoseFrame
    from tests.unit.store.conftest import make_person

    person = make_person(np.random.default_rng(0), "person_1")
    frame = PoseFrame(
        timestamp=dt.datetime(2026, 12, 2, 20, 0, tzinfo=dt.UTC), frame_id=3, persons=[person],
        processing_time_ms=4.5, metadata={"newest_packet_time": 1.5},
    )
    message = pose_message("lab", frame, 1.5)
    assert message["topic"] == POSE_TOPIC and message["t_end_s"] == 1.5
    update = json.loads(message["text"])
    assert update == {"type": "pose_update", "topic": "pose_updates", "space_id": "lab",
                      **frame.model_dump(mode="json")}
    decoded = pose_frame(message)
    assert decoded == frame.model_dump(mode="json")
    assert PoseFrame.model_validate(decoded) == frame
    assert pose_frame(message) is decoded
