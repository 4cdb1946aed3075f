"""The views that turn room metres into the seed's normalised x/y, and person boxes."""

from __future__ import annotations

import numpy as np
import pytest

from invispose.sim.view import box_front
from invispose.tracking.frame import bounding_boxes
from invispose.tracking.view import project

from .skeletons import skeleton

ROOM = np.array([6.0, 5.0, 3.0])


def test_front_view_keeps_the_room_in_frame_and_image_orientation() -> None:
    corners = np.array([[x, y, z] for x in (0, 6) for y in (0, 5) for z in (0, 3)], float)
    u, v = project("front", corners, ROOM)
    assert u.min() >= 0.0 and u.max() <= 1.0 and v.min() >= 0.0 and v.max() <= 1.0
    u, v = project("front", np.array([[3.0, 2.0, 1.5], [4.0, 2.0, 1.5], [3.0, 2.0, 2.5]]), ROOM)
    assert u[0] == pytest.approx(0.5) and v[0] == pytest.approx(0.5)
    assert u[1] > 0.5  # +x is to the right
    assert v[2] < 0.5  # up is towards the top of the image


def test_floor_view_is_the_floor_plan() -> None:
    u, v = project("floor", np.array([[3.0, 1.0, 1.7], [6.0, 5.0, 0.0]]), ROOM)
    np.testing.assert_allclose(u, [0.5, 1.0])
    np.testing.assert_allclose(v, [0.2, 1.0])
    with pytest.raises(ValueError):
        project("side", np.zeros((1, 3)), ROOM)


def test_boxes_follow_the_simulators_convention() -> None:
    kp = np.stack([skeleton("standing", 2.0, 2.0), skeleton("lying", 4.0, 1.0)])  # (2, 17, 3)
    u, v = project("front", kp, ROOM)
    boxes = bounding_boxes(u, v, np.full((2, 17), 0.9))
    for box, person in zip(boxes, kp, strict=True):
        expected = box_front(person, ROOM)
        np.testing.assert_allclose(
            box, [expected[k] for k in ("x", "y", "width", "height")], atol=1e-6
        )


def test_doubtful_keypoints_do_not_stretch_a_box() -> None:
    kp = skeleton("standing", 2.0, 2.0)[None]
    u, v = project("front", kp, ROOM)
    conf = np.full((1, 17), 0.9)
    conf[0, 15:] = 0.01  # ankles doubtful
    full = bounding_boxes(u, v, np.full((1, 17), 0.9))[0]
    trimmed = bounding_boxes(u, v, conf)[0]
    assert trimmed[3] < full[3]
    # nobody confident at all: every keypoint counts
    np.testing.assert_allclose(bounding_boxes(u, v, np.full((1, 17), 0.01))[0], full)
