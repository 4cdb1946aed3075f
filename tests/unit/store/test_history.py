"""Pose history: buffered writes, filters, ordering, retention."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from invispose.errors import InvisPoseError
from invispose.schemas import Event
from invispose.store import Store
from invispose.store import base as store_base
from invispose.store.history import MAX_BUFFERS_HELD

from .conftest import T0, FrameFactory, at


def test_history_serves_exactly_what_was_stored(store: Store, make_frame: FrameFactory) -> None:
    frames = [make_frame(i * 0.05, ("a", "b", "c")) for i in range(20)]
    for frame in frames:
        store.add_pose_frame("room", frame)
    assert store.history(at(0), at(10)) == []  # still buffered
    assert store.flush() == 20 and store.flush() == 0
    got = store.history(at(0), at(10))
    assert got == frames
    assert [f.model_dump_json() for f in got] == [f.model_dump_json() for f in frames]
    assert store.history_dicts(at(0), at(10)) == [f.model_dump() for f in frames]
    one = store.history_dicts(at(0), at(10), person_id="b", limit=1)
    assert one[0]["persons"] == [frames[0].persons[1].model_dump()]


def test_time_range_is_inclusive_and_ordered(store: Store, make_frame: FrameFactory) -> None:
    # written out of order; two frames share t = 3 s and keep their write order
    for t, fid in [(5, 50), (1, 10), (3, 30), (3, 31), (2, 20), (4, 40)]:
        store.add_pose_frame("room", make_frame(t).model_copy(update={"frame_id": fid}))
    store.flush()
    assert [f.frame_id for f in store.history(at(2), at(4))] == [20, 30, 31, 40]
    assert [f.frame_id for f in store.history(at(0), at(9))] == [10, 20, 30, 31, 40, 50]
    assert [f.frame_id for f in store.history(at(3), at(3))] == [30, 31]
    assert store.history(T0.timestamp() + 6, T0.timestamp() + 9) == []  # Unix seconds work


def test_limit_and_skip_page_through(store: Store, make_frame: FrameFactory) -> None:
    frames = [make_frame(i) for i in range(25)]
    for frame in frames:
        store.add_pose_frame("room", frame)
    store.flush()
    ids = [f.frame_id for f in frames]
    assert [f.frame_id for f in store.history(at(0), at(99), limit=10)] == ids[:10]
    assert [f.frame_id for f in store.history(at(0), at(99), limit=10, skip=20)] == ids[20:]
    assert store.history(at(0), at(99), limit=0) == []
    assert len(store.history(at(0), at(99), limit=1000)) == 25
    for bad in ({"limit": 1001}, {"limit": -1}, {"skip": -1}, {"limit": 2.5}):
        with pytest.raises(InvisPoseError):
            store.history(at(0), at(99), **bad)
    with pytest.raises(InvisPoseError, match="after end"):
        store.history(at(5), at(1))


def test_person_filter_keeps_only_that_person(store: Store, make_frame: FrameFactory) -> None:
    with_b = [make_frame(t, ("a", "b")) for t in (0, 2, 4)]
    without_b = [make_frame(t, ("a",)) for t in (1, 3)]
    for frame in with_b + without_b:
        store.add_pose_frame("room", frame)
    store.flush()
    got = store.history(at(0), at(10), person_id="b")
    assert [f.frame_id for f in got] == [f.frame_id for f in with_b]
    for served, original in zip(got, with_b, strict=True):
        assert served.persons == [original.persons[1]]
        assert served.timestamp == original.timestamp and served.metadata == original.metadata
    assert len(store.history(at(0), at(10), person_id="a")) == 5
    assert [f.frame_id for f in store.history(at(1), at(3), person_id="b")] == [with_b[1].frame_id]
    assert len(store.history(at(0), at(10), person_id="b", limit=1, skip=2)) == 1
    assert store.history(at(0), at(10), person_id="nobody") == []


def test_space_filter(store: Store, make_frame: FrameFactory) -> None:
    store.add_pose_frame("kitchen", make_frame(1, ("k",)))
    store.add_pose_frame("hall", make_frame(2, ("h",)))
    store.flush()
    assert [f.persons[0].id for f in store.history(at(0), at(9), space_id="hall")] == ["h"]
    assert store.history(at(0), at(9), person_id="k", space_id="hall") == []
    assert len(store.history(at(0), at(9), person_id="k", space_id="kitchen")) == 1
    latest = store.latest()
    assert latest is not None and latest.persons[0].id == "h"
    latest_kitchen = store.latest("kitchen")
    assert latest_kitchen is not None and latest_kitchen.persons[0].id == "k"
    assert store.latest("garage") is None


def test_full_buffer_flushes_itself(tmp_path: Path, make_frame: FrameFactory) -> None:
    with Store(tmp_path / "s.db", max_buffer_frames=4) as store:
        for i in range(10):
            store.add_pose_frame("room", make_frame(i))
        assert store.buffered_frames == 2
        assert len(store.history(at(0), at(99), limit=100)) == 8
        assert store.stats()["frames_written"] == 8


def test_bad_frames_are_refused_and_leave_the_buffer_intact(
    store: Store, make_frame: FrameFactory
) -> None:
    store.add_pose_frame("room", make_frame(0))
    with pytest.raises(InvisPoseError):
        store.add_pose_frame("room", make_frame(1, ("x", "x")))
    with pytest.raises(InvisPoseError):
        store.add_pose_frame("room", {"frame_id": 3})  # type: ignore[arg-type]
    with pytest.raises(InvisPoseError, match="space_id"):
        store.add_pose_frame("", make_frame(2))
    with pytest.raises(InvisPoseError, match="not valid text"):
        store.add_pose_frame("room", make_frame(2, ("\ud800",)))  # SQLite cannot store it
    with pytest.raises(InvisPoseError, match="64-bit"):
        store.add_pose_frame("room", make_frame(2).model_copy(update={"frame_id": 2**64}))
    with pytest.raises(InvisPoseError, match="person_id"):
        store.history(at(0), at(9), person_id=5)  # type: ignore[arg-type]
    assert store.buffered_frames == 1
    store.flush()
    assert len(store.history(at(0), at(9))) == 1


def test_prune_drops_history_older_than_retention(tmp_path: Path, make_frame: FrameFactory) -> None:
    day = 86_400.0
    with Store(tmp_path / "s.db", history_days=2.0) as store:
        for t_day in (0.0, 0.5, 1.0, 1.5, 2.5, 3.0):
            store.add_pose_frame(
                "room", make_frame(t_day * day, ("old" if t_day < 1.2 else "new",))
            )
        store.add_pose_frame("room", make_frame(0.2 * day, ("both",)))
        store.add_pose_frame("room", make_frame(2.9 * day, ("both",)))
        store.flush()
        now = at(3.2 * day)  # cutoff at 1.2 days
        assert store.prune(now, batch_frames=2) == 4
        kept = store.history(at(0), at(9 * day), limit=100)
        assert [round((f.timestamp - T0).total_seconds() / day, 1) for f in kept] == [
            1.5, 2.5, 2.9, 3.0,
        ]  # fmt: skip
        assert store.history(at(0), at(9 * day), person_id="old") == []
        assert len(store.history(at(0), at(9 * day), person_id="both")) == 1
        assert store.person("old") is None  # last seen before the cutoff
        both = store.person("both")
        assert both is not None and both["first_seen"] == at(0.2 * day)  # aggregate is kept
        assert len(store.trajectory("both")) == 1
        assert store.prune(now) == 0


def test_a_locked_database_holds_frames_until_it_frees(
    tmp_path: Path, make_frame: FrameFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_base, "BUSY_TIMEOUT_S", 0.01)
    path = tmp_path / "s.db"
    with Store(path, max_buffer_frames=2) as store:
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another writer holds the lock
        for i in range(42):
            store.add_pose_frame("room", make_frame(i))  # every 2nd add tries a flush
        assert store.buffered_frames == 2 * MAX_BUFFERS_HELD and store.frames_dropped == 2
        with pytest.raises(InvisPoseError, match="locked"):
            store.flush()
        with pytest.raises(InvisPoseError, match="locked"):
            store.append_events([Event(type="router.connected", timestamp=at(0))])
        other.execute("ROLLBACK")
        other.close()
        assert store.flush() == 2 * MAX_BUFFERS_HELD
        assert [f.frame_id for f in store.history(at(0), at(99))] == list(range(3, 43))
        assert store.events_since(0) == []
