"""The per-space tracker: ids, fusion, loss, the PoseFrame it serves, and snapshots."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pytest

from invispose import events as ev
from invispose.config import SiteConfig, parse_config
from invispose.errors import ConfigError, InvisPoseError
from invispose.schemas import COCO_KEYPOINTS, PoseFrame
from invispose.tracking import Tracker

from .skeletons import detection, events_of, play, skeleton, space, square_zone


def _standing_at(x: float, y: float):  # type: ignore[no-untyped-def]
    return lambda t: [skeleton("standing", x, y)]


def test_a_person_is_reported_after_consecutive_hits_with_one_detected_event() -> None:
    tracker = Tracker(space=space(), confirm_s=0.0, confirm_hits=3)
    ups = play(tracker, _standing_at(2.0, 2.0), 1000.0, 1.0)
    assert [len(u.pose_frame.persons) for u in ups[:4]] == [0, 0, 1, 1]
    detected = events_of(ups, ev.PERSON_DETECTED)
    assert len(detected) == 1
    data = detected[0].data
    assert data["person_id"] == "person_1" and data["activity"] == "standing"
    assert data["timestamp"].endswith("Z") and 0.0 <= data["location"]["x"] <= 1.0


def test_an_id_needs_half_a_second_of_observations_whatever_the_hop_rate() -> None:
    # at 20 hops/s three hits are 0.1 s: a slot that wandered for a few hops became a person
    for rate_hz, first in ((20.0, 10), (4.0, 2)):
        ups = play(Tracker(space=space()), _standing_at(2.0, 2.0), 0.0, 1.0, rate_hz=rate_hz)
        counts = [len(u.pose_frame.persons) for u in ups]
        assert counts.index(1) == first, (rate_hz, counts)

    def wanderer(t: float) -> list[np.ndarray]:  # six hops (0.3 s) in every second
        return [skeleton("standing", 4.0, 3.0)] if round(t * 20) % 20 < 6 else []

    assert not any(u.pose_frame.persons for u in play(Tracker(space=space()), wanderer, 0.0, 3.0))
    quick = play(Tracker(space=space(), confirm_s=0.0), wanderer, 0.0, 3.0)
    assert any(u.pose_frame.persons for u in quick)  # what the hit count alone let through


def test_a_single_spurious_detection_is_never_reported() -> None:
    tracker = Tracker(space=space())

    def flicker(t: float) -> list[np.ndarray]:
        return [skeleton("standing", 2.0, 2.0)] if round(t * 20) % 3 == 0 else []

    ups = play(tracker, flicker, 0.0, 2.0)
    assert all(not u.pose_frame.persons for u in ups)
    assert all(not u.events for u in ups)


def test_ids_survive_crossing_paths() -> None:
    tracker = Tracker(space=space(), confirm_s=0.0)

    def crossing(t: float) -> list[np.ndarray]:
        # two people walk diagonally across the room at 1 m/s and pass 0.3 m apart
        a = np.array([1.0, 1.0]) + t * np.array([0.8, 0.6])
        b = np.array([5.0, 1.3]) + t * np.array([-0.8, 0.6])
        return [skeleton("standing", *b), skeleton("standing", *a)][:: 1 if t < 2.5 else -1]

    ups = play(tracker, crossing, 0.0, 5.0)
    start = {p.id: p.keypoints[11].position_m for p in ups[5].pose_frame.persons}
    end = {p.id: p.keypoints[11].position_m for p in ups[-1].pose_frame.persons}
    assert set(start) == set(end) == {"person_1", "person_2"}
    for pid in start:
        moved_right = end[pid][0] - start[pid][0] > 0  # type: ignore[index]
        started_left = start[pid][0] < 3.0  # type: ignore[index]
        assert moved_right == started_left
    assert events_of(ups, ev.PERSON_LOST) == []


def test_ids_survive_short_gaps_and_are_lost_after_lost_after_s() -> None:
    tracker = Tracker(space=space(), confirm_s=0.0, lost_after_s=1.0)
    play(tracker, _standing_at(2.0, 2.0), 0.0, 1.0)
    gap = play(tracker, lambda t: [], 1.0, 0.8)  # 0.8 s without detections
    assert all(u.pose_frame.persons[0].id == "person_1" for u in gap)
    assert gap[-1].pose_frame.persons[0].confidence < gap[0].pose_frame.persons[0].confidence
    back = play(tracker, _standing_at(2.05, 2.0), 1.8, 0.5)
    assert [p.id for p in back[-1].pose_frame.persons] == ["person_1"]
    assert events_of(gap + back, ev.PERSON_LOST) + events_of(back, ev.PERSON_DETECTED) == []

    gone = play(tracker, lambda t: [], 2.3, 1.5)
    lost = events_of(gone, ev.PERSON_LOST)
    assert len(lost) == 1 and lost[0].data["person_id"] == "person_1"
    unseen_s = 2.3 + next(i for i, u in enumerate(gone) if u.events) / 20.0 - 2.25
    assert 1.0 < unseen_s <= 1.1  # lost at the first step more than 1 s after the last sighting
    assert lost[0].data["tracked_seconds"] == pytest.approx(2.25)
    assert gone[-1].pose_frame.persons == []
    again = play(tracker, _standing_at(2.0, 2.0), 3.8, 0.5)
    assert [p.id for p in again[-1].pose_frame.persons] == ["person_2"]  # ids are never reused


def test_two_routers_seeing_one_person_report_one_person() -> None:
    tracker = Tracker(space=space())
    ups = []
    for k in range(20):
        t = 10.0 + k * 0.05
        d1 = detection([skeleton("standing", 2.0, 2.0)], t, "r1")
        d2 = detection([skeleton("standing", 2.15, 2.1), skeleton("sitting", 5.0, 4.0)], t, "r2")
        ups.append(tracker.update([d1, d2], t))
    frame = ups[-1].pose_frame
    assert len(frame.persons) == 2
    by_activity = {p.activity: p for p in frame.persons}
    hip = by_activity["standing"].keypoints[11].position_m
    assert hip is not None and 2.1 < hip[0] < 2.2  # fused between the two views
    assert frame.metadata["routers"] == ["r1", "r2"]


def test_pose_frame_validates_with_the_seed_shape() -> None:
    tracker = Tracker(space=space(), confirm_s=0.0)
    ups = play(
        tracker,
        lambda t: [skeleton("standing", 2.0, 2.0), skeleton("lying", 4.0, 3.0)],
        1_700_000_000.0,
        0.5,
        routers=("r1", "r2"),
    )
    frame = ups[-1].pose_frame
    again = PoseFrame.model_validate(frame.model_dump())
    assert again == frame
    PoseFrame.model_validate_json(frame.model_dump_json())
    assert frame.frame_id == 10 and [u.pose_frame.frame_id for u in ups] == list(range(1, 11))
    assert frame.timestamp == dt.datetime.fromtimestamp(1_700_000_000.45, tz=dt.UTC)
    assert frame.processing_time_ms > 0
    meta = frame.metadata
    assert meta["space_id"] == "lab" and meta["routers"] == ["r1", "r2"]
    assert meta["t_end_s"] == pytest.approx(1_700_000_000.45)
    assert meta["latency_ms"]["inference"] == 3.0 and "tracking" in meta["latency_ms"]
    for person in frame.persons:
        assert [k.name for k in person.keypoints] == list(COCO_KEYPOINTS)
        assert [k.id for k in person.keypoints] == list(range(17))
        assert all(0.0 <= k.x <= 1.0 and 0.0 <= k.y <= 1.0 for k in person.keypoints)
        box = person.bounding_box
        assert set(box) == {"x", "y", "width", "height"}
        assert 0.0 <= box["x"] and box["x"] + box["width"] <= 1.0 + 1e-9
        assert 0.0 < person.confidence <= 1.0
    standing = next(p for p in frame.persons if p.activity == "standing")
    lying = next(p for p in frame.persons if p.activity == "lying")
    # the front view: a standing person is taller than wide, the head above the ankles
    assert standing.bounding_box["height"] > standing.bounding_box["width"]
    assert standing.keypoints[0].y < standing.keypoints[15].y
    assert lying.bounding_box["width"] > lying.bounding_box["height"]


def test_floor_view_is_top_down() -> None:
    tracker = Tracker(space=space("floor"), confirm_s=0.0)
    ups = play(tracker, _standing_at(3.0, 1.0), 0.0, 0.5)
    nose = ups[-1].pose_frame.persons[0].keypoints[0]
    assert nose.x == pytest.approx(3.0 / 6.0, abs=1e-3)
    assert nose.y == pytest.approx(1.05 / 5.0, abs=1e-3)


def test_snapshot_restore_keeps_ids_counters_and_zones() -> None:
    desk = square_zone("desk", 0.0, 0.0, 3.0, 5.0)
    tracker = Tracker(space=space(), confirm_s=0.0, zones=[desk])
    play(tracker, _standing_at(4.0, 4.0), 0.0, 0.5)  # person_1, later lost
    play(tracker, lambda t: [], 0.5, 1.5)

    def scene(t: float) -> list[np.ndarray]:
        return [skeleton("standing", 1.0, 1.0), skeleton("sitting", 4.5, 3.0)]

    before = play(tracker, scene, 2.0, 1.0)
    ids = sorted(p.id for p in before[-1].pose_frame.persons)
    assert ids == ["person_2", "person_3"]
    snap = json.loads(json.dumps(tracker.snapshot()))  # JSON round trip

    restored = Tracker(space=space(), confirm_s=0.0, zones=[desk])
    restored.restore(snap)
    assert restored.snapshot() == snap
    # the host was down for 5 s; the same people are still there
    after = play(restored, scene, 8.0, 1.0)
    assert sorted(p.id for p in after[0].pose_frame.persons) == ids
    assert after[0].pose_frame.frame_id == before[-1].pose_frame.frame_id + 1
    assert all(not u.events for u in after)  # no detected, lost or zone events on restart
    assert restored.zone_occupancy()["desk"]["person_ids"] == ["person_2"]
    sitting = next(p for p in after[-1].pose_frame.persons if p.id == "person_3")
    assert sitting.activity == "sitting"
    newcomer = play(restored, lambda t: [*scene(t), skeleton("standing", 2.0, 4.0)], 9.0, 0.5)
    assert "person_4" in {p.id for p in newcomer[-1].pose_frame.persons}


def test_restore_rejects_foreign_or_broken_snapshots() -> None:
    tracker = Tracker(space=space())
    snap = tracker.snapshot()
    with pytest.raises(InvisPoseError):
        tracker.restore({**snap, "space_id": "hall"})
    with pytest.raises(InvisPoseError):
        tracker.restore({**snap, "version": 99})
    with pytest.raises(InvisPoseError):
        tracker.restore({**snap, "tracks": [{"key": 1}]})


def test_time_never_runs_backwards() -> None:
    tracker = Tracker(space=space(), confirm_s=0.0)
    play(tracker, _standing_at(2.0, 2.0), 10.0, 0.5)
    late = tracker.update([detection([skeleton("standing", 2.0, 2.0)], 9.0, "r1")], 9.0)
    assert [p.id for p in late.pose_frame.persons] == ["person_1"]


def test_from_config_takes_the_space_and_its_zones() -> None:
    site: SiteConfig = parse_config(
        {
            "spaces": [
                {"id": "lab", "size_m": [6.0, 5.0, 3.0], "view": "floor"},
                {"id": "hall", "size_m": [10.0, 8.0, 3.0]},
            ],
            "zones": [
                {"id": "desk", "space": "lab", "polygon_m": [[0, 0], [1, 0], [1, 1]]},
                {"id": "door", "space": "hall", "polygon_m": [[0, 0], [1, 0], [1, 1]]},
            ],
        },
        env={},
    )
    tracker = Tracker.from_config(site, "lab", lost_after_s=2.0)
    assert tracker.space.view == "floor" and [z.id for z in tracker.zones] == ["desk"]
    assert tracker.lost_after_s == 2.0
    with pytest.raises(ConfigError):
        Tracker.from_config(site, "attic")
    with pytest.raises(ConfigError):
        Tracker(space=site.space("lab"), zones=site.zones)


def test_garbage_slots_are_skipped_without_taking_the_step_down() -> None:
    tracker = Tracker(space=space(), confirm_s=0.0)
    for k in range(5):
        people = [skeleton("standing", 2.0, 2.0), skeleton("standing", 4.0, 2.0)]
        det = detection(people, k * 0.05, "r1")
        det.keypoints_m[1, 3] = np.nan  # a broken skeleton
        det.presence[2] = np.nan
        det.keypoint_conf[0, :5] = np.nan
        up = tracker.update([det], k * 0.05)
    assert [p.id for p in up.pose_frame.persons] == ["person_1"]
    assert all(0.0 <= kp.confidence <= 1.0 for kp in up.pose_frame.persons[0].keypoints)


def test_a_track_coasting_towards_a_wall_stays_in_the_room() -> None:
    """Detections near a wall, then none: the filter's velocity must not carry the person
    through the wall while the track coasts (seen with the classical estimator's jumps)."""
    tracker = Tracker(space=space(), lost_after_s=1.5)

    def towards_wall(t: float) -> list[np.ndarray]:
        return [skeleton("standing", 3.0, max(1.5 - 1.5 * t, 0.05))]  # 1.5 m/s towards y=0

    play(tracker, towards_wall, 0.0, 1.0)
    coasting = play(tracker, lambda t: [], 1.0, 1.2)
    assert coasting[-1].pose_frame.persons  # still tracked while it coasts
    for update in coasting:
        for person in update.pose_frame.persons:
            x, y, _ = person.keypoints[11].position_m  # type: ignore[misc]
            assert 0.0 <= x <= 6.0 and 0.0 <= y <= 5.0, (x, y)
