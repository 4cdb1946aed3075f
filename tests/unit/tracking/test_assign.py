"""Candidates, cross-router fusion and Hungarian assignment."""

from __future__ import annotations

import numpy as np

from invispose.tracking.assign import fuse, gather_candidates, match

from .skeletons import detection, skeleton


def test_candidates_keep_slots_above_presence_and_the_newest_window_per_router() -> None:
    old = detection([skeleton("standing", 1.0, 1.0)], 1.0, "r1")
    new = detection([skeleton("standing", 2.0, 1.0), skeleton("sitting", 4.0, 3.0)], 1.05, "r1")
    new.presence[1] = 0.3  # below the threshold
    other = detection([], 1.02, "r2", latency=5.0)
    c = gather_candidates([old, new, other], "lab", 0.5)
    assert len(c) == 1
    np.testing.assert_allclose(c.keypoints_m[0], skeleton("standing", 2.0, 1.0), atol=1e-6)
    assert c.router_ids == ["r1", "r2"]
    assert c.newest_t_end_s == 1.05
    assert c.latency_ms == {"inference": 5.0}


def test_candidates_reject_other_spaces_bad_shapes_and_nan() -> None:
    good = detection([skeleton("standing", 1.0, 1.0), skeleton("standing", 3.0, 1.0)], 1.0, "r1")
    good.keypoints_m[1, 4, 0] = np.nan
    good.keypoint_conf[0, 0] = np.nan
    foreign = detection([skeleton("standing", 1.0, 1.0)], 1.0, "r2", space_id="hall")
    broken = detection([skeleton("standing", 1.0, 1.0)], 1.0, "r3")
    broken.keypoint_conf = broken.keypoint_conf[:, :5]
    c = gather_candidates([good, foreign, broken], "lab", 0.5)
    assert len(c) == 1 and c.rejected == 2
    assert c.keypoint_conf[0, 0] == 0.0


def test_two_routers_seeing_one_person_fuse_into_one_weighted_observation() -> None:
    a = skeleton("standing", 2.0, 2.0)
    b = skeleton("standing", 2.2, 2.0)
    d1 = detection([a], 1.0, "r1", conf=0.9)
    d2 = detection([b], 1.0, "r2", conf=0.3)
    obs = fuse(gather_candidates([d1, d2], "lab", 0.5), fuse_distance_m=0.5)
    assert len(obs) == 1 and obs.n_views[0] == 2
    expected = (0.9 * a + 0.3 * b) / 1.2
    np.testing.assert_allclose(obs.keypoints_m[0], expected, atol=1e-4)
    np.testing.assert_allclose(obs.centre_m[0], [2.05, 2.0, 0.95], atol=1e-4)
    np.testing.assert_allclose(obs.keypoint_conf[0], (0.81 + 0.09) / 1.2, atol=1e-4)


def test_fusion_keeps_distinct_people_and_never_merges_one_routers_slots() -> None:
    close_pair = [skeleton("standing", 2.0, 2.0), skeleton("standing", 2.3, 2.0)]
    far = skeleton("standing", 5.0, 4.0)
    d1 = detection([*close_pair, far], 1.0, "r1")
    d2 = detection([skeleton("standing", 2.02, 2.0), skeleton("standing", 2.32, 2.0)], 1.0, "r2")
    obs = fuse(gather_candidates([d1, d2], "lab", 0.5), fuse_distance_m=0.5)
    assert len(obs) == 3
    xs = sorted(np.round(obs.centre_m[:, 0], 2).tolist())
    assert xs == [2.01, 2.31, 5.0]
    assert sorted(obs.n_views.tolist()) == [1, 2, 2]


def test_match_is_optimal_and_gated() -> None:
    predicted = np.array([[1.0, 1.0, 1.0], [2.0, 1.0, 1.0], [5.0, 5.0, 1.0]])
    observed = np.array([[1.9, 1.0, 1.0], [1.2, 1.0, 1.0], [9.0, 9.0, 1.0]])
    pairs, lost, new = match(predicted, observed, np.full(3, 0.7))
    assert sorted(pairs) == [(0, 1), (1, 0)]
    assert lost == [2] and new == [2]


def test_match_down_weights_height() -> None:
    # a person whose hips dropped 1 m (a fall) is still the same person on the floor plan
    pairs, _, _ = match(np.array([[1.0, 1.0, 1.0]]), np.array([[1.0, 1.0, 0.0]]), np.array([0.7]))
    assert pairs == [(0, 0)]
