"""Posture classification, activity hysteresis and fall detection."""

from __future__ import annotations

import numpy as np
import pytest

from invispose import events as ev
from invispose.tracking import Tracker
from invispose.tracking.activity import ActivityParams, ActivityState, classify_posture, posture

from .skeletons import blend, events_of, play, skeleton, space

PARAMS = ActivityParams()


def _label(kp: np.ndarray, speed_mps: float = 0.0, conf: float = 0.9) -> str | None:
    pose = posture(kp.tolist(), [conf] * 17, PARAMS)
    return classify_posture(pose, speed_mps, PARAMS)


@pytest.mark.parametrize("name", ["standing", "sitting", "lying"])
def test_hand_built_postures_are_recognised(name: str) -> None:
    assert _label(skeleton(name, 2.0, 3.0)) == name


def test_geometry_of_a_standing_skeleton() -> None:
    pose = posture(skeleton("standing", 1.0, 1.0).tolist(), [0.9] * 17, PARAMS)
    assert pose.hip_z == pytest.approx(0.95)
    assert pose.torso_deg == pytest.approx(0.0, abs=1e-6)
    assert pose.knee_deg > 170.0
    assert posture(skeleton("sitting", 1.0, 1.0).tolist(), [0.9] * 17, PARAMS).knee_deg < 100


def test_speed_makes_walking_and_raised_wrist_makes_waving() -> None:
    assert _label(skeleton("standing", 2.0, 2.0), speed_mps=1.0) == "walking"
    assert _label(skeleton("standing", 2.0, 2.0, wave=True)) == "waving"
    assert _label(skeleton("sitting", 2.0, 2.0), speed_mps=1.0) == "sitting"


def test_unseen_or_bent_torso_is_ambiguous() -> None:
    assert _label(skeleton("standing", 2.0, 2.0), conf=0.05) is None
    half_down = blend("standing", "lying", 0.45) + np.array([2.0, 2.0, 0.0])
    assert _label(half_down) in (None, "sitting")


def test_a_new_activity_must_persist_before_it_counts() -> None:
    state = ActivityState()
    assert state.step("standing", 0.95, 1.6, 0.0, 0.9, 0.0, PARAMS) == (None, None)
    assert state.activity == "standing"  # the first label is taken at once
    changes = [state.step("sitting", 0.5, 1.2, 0.0, 0.9, k * 0.05, PARAMS)[0] for k in range(1, 12)]
    assert changes[:10] == [None] * 10  # first sitting frame at 0.05 s, held 0 … 0.45 s
    assert changes[10] == ("standing", "sitting")  # held 0.5 s
    # a one-frame blip does not change anything
    state.step("standing", 0.95, 1.6, 0.0, 0.9, 0.6, PARAMS)
    state.step("sitting", 0.5, 1.2, 0.0, 0.9, 0.65, PARAMS)
    assert state.activity == "sitting" and state.pending is None


def _fall_scene(fall_at: float, fall_s: float, end_posture: str = "lying"):  # type: ignore[no-untyped-def]
    def scene(t: float) -> list[np.ndarray]:
        w = (t - fall_at) / fall_s
        return [blend("standing", end_posture, w) + np.array([3.0, 2.5, 0.0])]

    return scene


def test_a_scripted_fall_fires_once_and_stays_fallen_until_the_person_gets_up() -> None:
    tracker = Tracker(space=space())
    ups = play(tracker, _fall_scene(1.0, 0.6), 100.0, 4.0)
    falls = events_of(ups, ev.FALL_DETECTED)
    assert len(falls) == 1
    data = falls[0].data
    assert data["person_id"] == "person_1" and data["alert_triggered"] is True
    assert data["severity"] in ("high", "medium") and 0.5 <= data["confidence"] <= 1.0
    assert data["drop_m"] > 0.8 and data["fall_speed_mps"] > 1.0
    assert {"zone_id", "x", "y"} <= set(data["location"])
    fall_frame = next(i for i, u in enumerate(ups) if falls[0] in u.events)
    assert 1.0 <= fall_frame / 20.0 <= 1.0 + 0.6 + 2.0
    assert ups[-1].pose_frame.persons[0].activity == "fallen"
    changes = events_of(ups, ev.ACTIVITY_DETECTED)
    assert changes[-1].data["activity"] == "fallen"

    # lying still, then getting up: no second fall, activity back to standing
    def get_up(t: float) -> list[np.ndarray]:
        return [blend("lying", "standing", (t - 1.0) / 1.5) + np.array([3.0, 2.5, 0.0])]

    later = play(tracker, get_up, 104.0, 4.0)
    assert events_of(later, ev.FALL_DETECTED) == []
    assert later[-1].pose_frame.persons[0].activity == "standing"
    assert [e.data["activity"] for e in events_of(later, ev.ACTIVITY_DETECTED)][-1] == "standing"


def test_a_second_fall_is_a_second_event() -> None:
    tracker = Tracker(space=space())
    play(tracker, _fall_scene(1.0, 0.5), 0.0, 4.0)
    play(tracker, lambda t: [skeleton("standing", 3.0, 2.5)], 4.0, 2.0)
    again = play(tracker, _fall_scene(0.5, 0.5), 6.0, 3.0)
    assert len(events_of(again, ev.FALL_DETECTED)) == 1


def test_sitting_down_quickly_or_lying_down_slowly_is_not_a_fall() -> None:
    tracker = Tracker(space=space())
    # drops onto a chair in 0.35 s (hips faster than 1 m/s), then sits for 3 s
    ups = play(tracker, _fall_scene(1.0, 0.35, "sitting"), 0.0, 4.5)
    assert ups[-1].pose_frame.persons[0].activity == "sitting"

    def lie_down(t: float) -> list[np.ndarray]:
        return [blend("sitting", "lying", t / 3.0) + np.array([3.0, 2.5, 0.0])]

    ups += play(tracker, lie_down, 4.5, 5.0)
    assert events_of(ups, ev.FALL_DETECTED) == []
    assert ups[-1].pose_frame.persons[0].activity == "lying"


def test_walking_is_reported_with_hysteresis() -> None:
    tracker = Tracker(space=space())
    ups = play(tracker, lambda t: [skeleton("standing", 1.0 + max(0.0, t - 1.0), 2.0)], 0.0, 3.0)
    acts = [u.pose_frame.persons[0].activity for u in ups if u.pose_frame.persons]
    assert acts[0] == "standing" and acts[-1] == "walking"
    change = events_of(ups, ev.ACTIVITY_DETECTED)
    assert [(e.data["previous_activity"], e.data["activity"]) for e in change] == [
        ("standing", "walking")
    ]
