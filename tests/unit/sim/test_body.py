"""Skeletons: bone lengths, floor contact, activity labels and falls."""

from __future__ import annotations

import numpy as np

from invispose.schemas import ACTIVITIES
from invispose.sim.body import BONES, keypoints, keypoints_major
from invispose.sim.motion import (
    FALL,
    KIND_NAMES,
    activity_at,
    falling_during,
    pose_at,
    random_motion,
)
from invispose.sim.scripts import PersonScript

TIMES = np.linspace(-3.0, 3.0, 241)


def _people(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    motion = random_motion(rng, np.repeat(np.arange(len(KIND_NAMES)), 4))
    motion.t_fall_s[:] = rng.uniform(-1.0, 1.0, len(motion))
    kp = keypoints(pose_at(motion, TIMES), motion.height_m[:, None])  # (M, T, 17, 3)
    return kp, motion.height_m


def test_bones_keep_their_lengths_through_every_activity() -> None:
    kp, _ = _people(0)
    for a, b in BONES:
        length = np.linalg.norm(kp[:, :, a] - kp[:, :, b], axis=-1)  # (M, T)
        assert np.allclose(length, length[:, :1], atol=1e-4), (a, b)


def test_bone_lengths_scale_with_stature() -> None:
    kp, height = _people(1)
    thigh = np.linalg.norm(kp[:, 0, 11] - kp[:, 0, 13], axis=-1)
    assert np.allclose(thigh / height, thigh[0] / height[0], rtol=1e-4)


def test_bodies_rest_on_the_floor() -> None:
    kp, height = _people(2)
    lowest = kp[..., 2].min(axis=-1)  # (M, T)
    assert lowest.min() > 0.0
    standing = kp[0:4, :, 0, 2]  # walkers: the nose stays high
    assert np.all(standing > 0.8 * height[0:4, None])


def test_keypoint_major_layout_matches() -> None:
    rng = np.random.default_rng(3)
    motion = random_motion(rng, [0, 2, 4])
    pose = pose_at(motion, TIMES[:5])
    major = keypoints_major(pose, motion.height_m[:, None])  # (17, 3, M, T)
    flat = keypoints(pose, motion.height_m[:, None])  # (M, T, 17, 3)
    assert np.array_equal(np.moveaxis(major, (0, 1), (-2, -1)), flat)


def test_fall_labels_and_times() -> None:
    rng = np.random.default_rng(4)
    motion = random_motion(rng, [FALL, FALL])
    motion.t_fall_s[:] = [0.0, 5.0]
    motion.fall_s[:] = 0.8
    before, after = activity_at(motion, -0.5), activity_at(motion, 2.0)
    assert ACTIVITIES[after[0]] == "fallen" and ACTIVITIES[before[0]] in ("walking", "standing")
    assert ACTIVITIES[after[1]] != "fallen"
    assert falling_during(motion, -0.64, 0.1).tolist() == [True, False]
    assert falling_during(motion, 0.9, 1.5).tolist() == [False, False]  # down already
    kp = keypoints(pose_at(motion, np.asarray([-0.5, 2.0])), motion.height_m[:, None])
    assert kp[0, 0, 0, 2] > 1.2 and kp[0, 1, 0, 2] < 0.4  # the head went down


def test_scripts_end_each_activity_where_the_next_begins() -> None:
    script = PersonScript("a", 1.7, np.asarray([6.0, 5.0, 2.7]))
    script.start([1.0, 1.0])
    script.add("walk", to_m=[4.0, 3.0], speed_mps=1.0)
    script.add("sit", duration_s=3.0)
    script.add("fall", duration_s=4.0)
    script.add("stand", duration_s=2.0)
    t = np.arange(0.0, 14.0, 0.01)
    pose, height = script.pose(t)
    kp = keypoints(pose, height[:, None])[0]  # (T, 17, 3)
    step = np.linalg.norm(np.diff(kp, axis=0), axis=-1).max(axis=-1)  # (T-1,) per 10 ms
    assert step.max() < 0.1  # no jumps: at most 10 m/s for one keypoint
    assert np.allclose(kp[-1, 11, :2], kp[int(3.7 / 0.01) + 800, 11, :2], atol=0.3)
    assert [script.activity(x) for x in (1.0, 5.0, 8.0, 13.0)] == [
        "walking", "sitting", "fallen", "standing"]
    assert script.fall_times(14.0) == [script.segments[3].t0_s]
    for a, b in BONES:
        length = np.linalg.norm(kp[:, a] - kp[:, b], axis=-1)
        assert np.allclose(length, length[0], atol=1e-4)
