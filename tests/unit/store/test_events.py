"""The event log: monotonic ids, filters, durability across reopen and crash."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from invispose.errors import InvisPoseError
from invispose.schemas import Event
from invispose.store import Store

from .conftest import at


def ev(type_: str = "person.fall_detected", space: str | None = "home", **data: object) -> Event:
    return Event(type=type_, timestamp=at(1.5), space_id=space, data=dict(data))


def test_ids_increase_and_events_read_back(store: Store) -> None:
    first = store.append_events([ev(person_id="a"), ev("person.entered_zone", zone_id="z")])
    second = store.append_events([ev(person_id="b")])
    ids = [e.id for e in first + second]
    assert ids == [1, 2, 3]
    assert store.last_event_id() == 3
    assert store.events_since(0) == first + second
    assert store.events_since(1) == first[1:] + second
    assert store.events_since(0, limit=1) == first[:1]
    assert first[0].timestamp == at(1.5) and first[0].data == {"person_id": "a"}
    assert store.append_events([]) == []


def test_events_filter_by_type_and_space(store: Store) -> None:
    store.append_events([
        ev("person.fall_detected"),
        ev("router.connected", space=None),
        ev("person.fall_detected", space="garage"),
        ev("person.entered_zone"),
    ])  # fmt: skip
    falls = store.events_since(0, types=["person.fall_detected"])
    assert [e.id for e in falls] == [1, 3]
    assert [e.id for e in store.events_since(0, space_id="home")] == [1, 4]
    mixed = store.events_since(1, types=["person.fall_detected", "router.connected"])
    assert [e.id for e in mixed] == [2, 3]
    assert store.events_since(0, types=[]) == []
    with pytest.raises(InvisPoseError):
        store.events_since(0, types="person.fall_detected")
    with pytest.raises(InvisPoseError):
        store.events_since(-1)


def test_bad_events_write_nothing(store: Store) -> None:
    store.append_events([ev()])
    with pytest.raises(InvisPoseError, match="JSON"):
        store.append_events([ev(), ev(blob=object())])
    with pytest.raises(InvisPoseError, match="already has id"):
        store.append_events([ev().model_copy(update={"id": 9})])
    with pytest.raises(InvisPoseError, match="must be an Event"):
        store.append_events([{"type": "x"}])  # type: ignore[list-item]
    with pytest.raises(InvisPoseError, match="not valid text"):
        store.append_events([ev(), ev("person.\udc80")])
    with pytest.raises(InvisPoseError):
        store.events_since(2**64)
    assert [e.id for e in store.events_since(0)] == [1]
    (numpy_event,) = store.append_events([ev(score=np.float32(0.25), xs=np.arange(2))])
    assert numpy_event.data == {"score": 0.25, "xs": [0, 1]}
    assert store.events_since(1) == [numpy_event]


def test_ids_never_repeat_after_reopen(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with Store(path) as store:
        store.append_events([ev(), ev()])
    with Store(path) as store:
        (third,) = store.append_events([ev()])
        assert third.id == 3
        assert [e.id for e in store.events_since(0)] == [1, 2, 3]


CRASHING_WRITER = """
import datetime as dt, os, sys
from invispose.schemas import Event, PoseFrame
from invispose.store import Store

store = Store(sys.argv[1], history_days=7.0)
t0 = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
def frame(i):
    return PoseFrame(timestamp=t0 + dt.timedelta(seconds=i), frame_id=i, persons=[],
                     processing_time_ms=1.0)
for i in range(5):
    store.add_pose_frame("home", frame(i))
store.flush()
store.append_events([Event(type="person.fall_detected", timestamp=t0, data={"i": i})
                     for i in range(3)])
for i in range(5, 8):
    store.add_pose_frame("home", frame(i))  # buffered, never flushed
os._exit(0)  # die without closing, as a killed process would
"""


def test_crash_keeps_events_and_flushed_frames(tmp_path: Path) -> None:
    path = tmp_path / "crash" / "s.db"
    script = textwrap.dedent(CRASHING_WRITER)
    subprocess.run([sys.executable, "-c", script, str(path)], check=True, timeout=120)
    with Store(path) as store:
        assert [e.data["i"] for e in store.events_since(0)] == [0, 1, 2]
        frames = store.history(at(-1e9), at(1e9))
        assert [f.frame_id for f in frames] == [0, 1, 2, 3, 4]
