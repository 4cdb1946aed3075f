"""The persons aggregate and trajectories kept from stored frames."""

from __future__ import annotations

import numpy as np
import pytest

from invispose.errors import InvisPoseError
from invispose.schemas import PoseFrame
from invispose.store import Store

from .conftest import T0, FrameFactory, at, make_person


def test_person_details_in_the_seed_shape(store: Store, make_frame: FrameFactory) -> None:
    plan = [  # (t, confidence, activity, zone)
        (2.0, 0.5, "standing", "hall"),
        (1.0, 0.9, "walking", "hall"),
        (3.0, 0.7, "walking", "kitchen"),
    ]
    for t, conf, activity, zone in plan[:2]:
        store.add_pose_frame("home", make_frame(t, ("p",), confidence=conf, activity=activity,
                                                zone_id=zone))  # fmt: skip
    store.flush()
    t, conf, activity, zone = plan[2]
    store.add_pose_frame("home", make_frame(t, ("p",), confidence=conf, activity=activity,
                                            zone_id=zone))  # fmt: skip
    store.add_pose_frame("home", make_frame(2.5, ("q",), activity=None, zone_id=None))
    store.flush()
    p = store.person("p")
    assert p == {
        "person_id": "p",
        "first_seen": at(1.0),
        "last_seen": at(3.0),
        "current_zone": "kitchen",
        "average_confidence": pytest.approx(0.7),
        "detected_activities": ["walking", "standing"],  # in the order first seen
        "space_id": "home",
    }
    q = store.person("q")
    assert q is not None and q["detected_activities"] == [] and q["current_zone"] is None
    assert store.person("nobody") is None
    with pytest.raises(InvisPoseError):
        store.person(3)  # type: ignore[arg-type]


def test_zone_follows_the_latest_frame_even_when_written_late(
    store: Store, make_frame: FrameFactory
) -> None:
    store.add_pose_frame("home", make_frame(5.0, ("p",), zone_id="bedroom"))
    store.flush()
    store.add_pose_frame("home", make_frame(4.0, ("p",), zone_id="hall"))  # late arrival
    store.flush()
    p = store.person("p")
    assert p is not None and p["current_zone"] == "bedroom" and p["last_seen"] == at(5.0)
    assert p["first_seen"] == at(4.0)


def test_persons_lists_active_ones_newest_first(store: Store, make_frame: FrameFactory) -> None:
    for t, pid in [(0.0, "old"), (50.0, "mid"), (100.0, "new")]:
        store.add_pose_frame("home", make_frame(t, (pid,), activity="sitting"))
    store.add_pose_frame("garage", make_frame(60.0, ("car",)))
    store.flush()
    assert [p["person_id"] for p in store.persons()] == ["new", "car", "mid", "old"]
    active = store.persons(active_within_s=45.0, now=at(100.0))
    assert [p["person_id"] for p in active] == ["new", "car"]
    assert active[0]["detected_activities"] == ["sitting"]
    assert [p["person_id"] for p in store.persons(space_id="garage")] == ["car"]
    assert store.persons(active_within_s=1.0, now=at(500.0)) == []


def test_trajectory_is_the_hip_centre_over_time(store: Store, rng: np.random.Generator) -> None:
    for i in range(10):
        person = make_person(rng, "p", hip_m=(0.5 * i, 1.0, 0.9), zone_id=f"z{i % 2}")
        frame = PoseFrame(timestamp=at(i), frame_id=i, persons=[person], processing_time_ms=1)
        store.add_pose_frame("home", frame)
    # a frame where the person has no 3-D positions is skipped
    blind = make_person(rng, "p")
    blind = blind.model_copy(
        update={"keypoints": [k.model_copy(update={"position_m": None}) for k in blind.keypoints]}
    )
    store.add_pose_frame(
        "home", PoseFrame(timestamp=at(20), frame_id=20, persons=[blind], processing_time_ms=1)
    )
    store.flush()
    points = store.trajectory("p")
    assert [p["timestamp"] for p in points] == [at(i) for i in range(10)]
    assert [p["x"] for p in points] == pytest.approx([0.5 * i for i in range(10)], abs=1e-6)
    assert all(p["y"] == pytest.approx(1.0) and p["z"] == pytest.approx(0.9) for p in points)
    assert [p["zone_id"] for p in points[:3]] == ["z0", "z1", "z0"]
    assert [p["timestamp"] for p in store.trajectory("p", at(2), at(4))] == [at(2), at(3), at(4)]
    assert store.trajectory("nobody") == []
    with pytest.raises(InvisPoseError):
        store.trajectory("p", max_points=0)


def test_trajectory_is_decimated_evenly(store: Store, make_frame: FrameFactory) -> None:
    for i in range(1000):  # 0.1 s apart: 99.9 s in all
        store.add_pose_frame("home", make_frame(i * 0.1, ("p",)))
    store.flush()
    points = store.trajectory("p", max_points=50)
    assert 45 <= len(points) <= 50
    times = [(p["timestamp"] - T0).total_seconds() for p in points]
    assert times == sorted(set(times))
    assert times[0] == 0.0
    gaps = np.diff(times)
    assert gaps.min() >= 1.9 and gaps.max() <= 2.1  # one point per ~2 s bucket
    sub = store.trajectory("p", at(10), at(20), max_points=5)
    sub_times = [(p["timestamp"] - T0).total_seconds() for p in sub]
    assert len(sub) == 5 and sub_times[0] == pytest.approx(10.0) and sub_times[-1] <= 20.0
