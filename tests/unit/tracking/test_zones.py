"""Zones: point in polygon, entries and exits, occupancy and its alerts."""

from __future__ import annotations

import numpy as np

from invispose import events as ev
from invispose.config import ZoneConfig
from invispose.tracking import Tracker
from invispose.tracking.zones import ZoneMap

from .skeletons import events_of, play, skeleton, space, square_zone


def test_points_in_convex_and_concave_polygons_at_once() -> None:
    l_shape = ZoneConfig(
        id="l",
        space="lab",
        polygon_m=[(0, 0), (3, 0), (3, 1), (1, 1), (1, 3), (0, 3)],
    )
    triangle = ZoneConfig(id="t", space="lab", polygon_m=[(2, 2), (4, 2), (3, 4)])
    zones = ZoneMap([l_shape, triangle])
    points = np.array(
        [[0.5, 0.5], [2.5, 0.5], [2.0, 2.0 - 1e-9], [0.5, 2.5], [2.5, 2.5], [3.0, 3.0], [3.9, 3.9]]
    )
    inside = zones.contains(points)
    expected = [
        [True, False],  # corner of the L
        [True, False],  # its foot
        [False, False],  # the L's notch, just below the triangle's corner
        [True, False],  # its stem
        [False, True],
        [False, True],
        [False, False],  # beside the triangle's apex
    ]
    assert inside.tolist() == expected


def test_random_points_agree_with_a_scalar_ray_cast(rng: np.random.Generator) -> None:
    poly = rng.uniform(0.0, 5.0, (9, 2))
    centre = poly.mean(axis=0)
    angles = np.arctan2(*(poly - centre).T[::-1])
    poly = poly[np.argsort(angles)]  # a star-shaped (simple) polygon
    zone = ZoneConfig(id="z", space="lab", polygon_m=[tuple(p) for p in poly])
    points = rng.uniform(-0.5, 5.5, (400, 2))

    def scalar(x: float, y: float) -> bool:
        inside = False
        for (x1, y1), (x2, y2) in zip(poly, np.roll(poly, -1, axis=0), strict=True):
            if (y1 > y) != (y2 > y) and x < x1 + (y - y1) * (x2 - x1) / (y2 - y1):
                inside = not inside
        return inside

    got = ZoneMap([zone]).contains(points)[:, 0]
    assert got.tolist() == [scalar(x, y) for x, y in points]


def _walk(x0: float, x1: float, y: float, start: float, duration: float):  # type: ignore[no-untyped-def]
    def scene(t: float) -> list[np.ndarray]:
        x = x0 + (x1 - x0) * min(max((t - start) / duration, 0.0), 1.0)
        return [skeleton("standing", x, y)]

    return scene


def test_entering_and_leaving_a_zone() -> None:
    desk = square_zone("desk", 2.0, 1.0, 4.0, 3.0)
    tracker = Tracker(space=space(), zones=[desk])
    ups = play(tracker, _walk(0.5, 3.0, 2.0, 0.5, 2.0), 0.0, 3.5)
    entered = events_of(ups, ev.PERSON_ENTERED_ZONE)
    assert len(entered) == 1
    assert entered[0].data["zone_id"] == "desk" and entered[0].data["person_id"] == "person_1"
    assert entered[0].data["occupancy"] == 1 and entered[0].space_id == "lab"
    assert ups[-1].pose_frame.persons[0].zone_id == "desk"
    occupancy = tracker.zone_occupancy()["desk"]
    assert occupancy["occupancy_count"] == 1 and occupancy["person_ids"] == ["person_1"]

    ups = play(tracker, _walk(3.0, 5.5, 2.0, 0.0, 1.5), 3.5, 2.5)
    left = events_of(ups, ev.PERSON_LEFT_ZONE)
    assert len(left) == 1 and left[0].data["reason"] == "moved"
    assert 1.0 < left[0].data["duration_seconds"] < 3.5
    assert ups[-1].pose_frame.persons[0].zone_id is None
    assert tracker.zone_occupancy()["desk"]["occupancy_count"] == 0
    assert events_of(ups, ev.PERSON_ENTERED_ZONE) == []


def test_standing_on_a_border_does_not_flicker() -> None:
    desk = square_zone("desk", 2.0, 1.0, 4.0, 3.0)
    tracker = Tracker(space=space(), confirm_s=0.0, zones=[desk])
    # ankles jitter ±3 cm across the x = 2 m edge every frame: at most the first placement
    ups = play(
        tracker, lambda t: [skeleton("standing", 2.0 + 0.03 * (-1) ** round(t * 20), 2.0)], 0.0, 3.0
    )
    changes = events_of(ups, ev.PERSON_ENTERED_ZONE) + events_of(ups, ev.PERSON_LEFT_ZONE)
    assert len(changes) <= 1
    assert not any(c.timestamp.timestamp() > 0.2 for c in changes)


def test_restricted_zone_breach_and_high_occupancy_alerts() -> None:
    vault = square_zone("vault", 3.0, 0.0, 6.0, 5.0, restricted=True)
    lobby = square_zone("lobby", 0.0, 0.0, 3.0, 5.0, max_occupancy=1)
    tracker = Tracker(space=space(), zones=[vault, lobby], occupancy_repeat_s=2.0)

    def two_people(t: float) -> list[np.ndarray]:
        second_y = 4.0 if t > 1.0 else 10.0  # the second person walks in after 1 s
        people = [skeleton("standing", 1.0, 1.0)]
        if second_y < 5.0:
            people.append(skeleton("standing", 1.5, second_y))
        return people

    ups = play(tracker, two_people, 0.0, 4.0)
    alerts = events_of(ups, ev.HIGH_OCCUPANCY)
    # raised when the second person is confirmed, repeated once 2 s later, not every frame
    assert len(alerts) == 2
    first, repeat = (a.data for a in alerts)
    assert first["current_occupancy"] == 2 and first["max_occupancy"] == 1
    assert first["duration_seconds"] == 0.0
    assert repeat["duration_seconds"] >= 2.0
    assert sorted(first["person_ids"]) == ["person_1", "person_2"]
    assert tracker.zone_occupancy()["lobby"]["over_capacity"] is True
    assert events_of(ups, ev.RESTRICTED_ZONE_BREACH) == []

    ups = play(tracker, lambda t: [skeleton("standing", 1.0 + 3.0 * min(t, 1.0), 1.0)], 4.0, 2.0)
    breach = events_of(ups, ev.RESTRICTED_ZONE_BREACH)
    assert len(breach) == 1
    assert breach[0].data["zone_id"] == "vault" and breach[0].data["person_id"] == "person_1"
    assert events_of(ups, ev.PERSON_LOST)[0].data["person_id"] == "person_2"
    assert tracker.zone_occupancy()["lobby"]["over_capacity"] is False


def test_a_lost_person_leaves_their_zone() -> None:
    desk = square_zone("desk", 0.0, 0.0, 6.0, 5.0)
    tracker = Tracker(space=space(), zones=[desk])
    play(tracker, lambda t: [skeleton("standing", 2.0, 2.0)], 0.0, 1.0)
    ups = play(tracker, lambda t: [], 1.0, 1.5)
    left = events_of(ups, ev.PERSON_LEFT_ZONE)
    assert len(left) == 1 and left[0].data["reason"] == "lost"
    assert left[0].data["location"]["x"] > 0.0
    assert tracker.zone_occupancy()["desk"]["occupancy_count"] == 0
