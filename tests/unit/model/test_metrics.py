"""Metric functions against hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from invispose.model.metrics import (
    OKS_SIGMAS,
    MeanPoseStats,
    MetricAccumulator,
    average_precision,
    box_area_px2,
    joint_errors_m,
    match_persons,
    oks_ap,
    oks_matrix,
    pa_joint_errors_m,
)
from invispose.schemas import N_KEYPOINTS

J = N_KEYPOINTS


def pose(offset: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> np.ndarray:
    """A simple 17-joint body: joints stacked 10 cm apart along z, shifted by offset."""
    body = np.zeros((J, 3), np.float32)
    body[:, 2] = np.linspace(0.0, 1.6, J)
    body[:, 0] = np.where(np.arange(J) % 2, 0.2, -0.2)
    return body + np.asarray(offset, np.float32)


def test_oks_of_one_displaced_joint_is_hand_computed() -> None:
    true = np.stack([np.linspace(100, 300, J), np.linspace(50, 450, J)], axis=1)[None]  # (1, J, 2)
    area = box_area_px2(true)
    assert area[0] == pytest.approx(200 * 400)
    # move the nose so that d² = 2·s²·(2σ)²: its term is exactly exp(−1)
    d = math.sqrt(2 * area[0] * (2 * OKS_SIGMAS[0]) ** 2)
    pred = true.copy()
    pred[0, 0, 0] += d
    oks = oks_matrix(pred, true, area)
    assert oks.shape == (1, 1)
    assert oks[0, 0] == pytest.approx((16 + math.exp(-1)) / 17, rel=1e-5)


def test_oks_of_a_uniform_shift_follows_the_formula() -> None:
    true = np.stack([np.linspace(0, 100, J), np.linspace(0, 200, J)], axis=1)[None]
    pred = true + np.array([3.0, 4.0])  # 5 px everywhere
    area = 100.0 * 200.0
    expected = np.mean(np.exp(-25.0 / (2 * area * (2 * OKS_SIGMAS) ** 2)))
    assert oks_matrix(pred, true, np.array([area]))[0, 0] == pytest.approx(expected, rel=1e-5)


def test_mpjpe_matches_persons_whose_order_is_swapped() -> None:
    a, b = pose((1.0, 1.0, 0.0)), pose((3.0, 2.0, 0.0))
    true = np.stack([a, b])
    pred = np.stack([b + np.array([0.0, 0.0, 0.05]), a + np.array([0.03, 0.04, 0.0])])
    rows, cols = match_persons(pred, true)
    assert dict(zip(rows.tolist(), cols.tolist(), strict=True)) == {0: 1, 1: 0}
    errors = joint_errors_m(pred[rows], true[cols])  # (2, J)
    assert errors.mean() * 1000 == pytest.approx((50 + 50) / 2, rel=1e-5)


def test_pa_mpjpe_removes_scale_rotation_and_translation() -> None:
    true = pose()[None]
    angle = 0.7
    rot = np.array(
        [[math.cos(angle), -math.sin(angle), 0], [math.sin(angle), math.cos(angle), 0], [0, 0, 1]]
    )
    pred = (1.3 * true[0] @ rot.T + np.array([2.0, -1.0, 0.5]))[None].astype(np.float32)
    assert joint_errors_m(pred, true).mean() > 0.5
    assert pa_joint_errors_m(pred, true).max() < 1e-5


def test_pck_counts_joints_within_150_mm() -> None:
    true = pose((2.0, 2.0, 0.0))
    pred = true.copy()
    pred[:5, 0] += 0.10  # within 150 mm
    pred[5:9, 1] += 0.20  # outside
    acc = MetricAccumulator()
    acc.update(
        presence=np.array([[0.9, 0.1, 0.0, 0.0]], np.float32),
        keypoints_m=np.stack([pred, pose(), pose(), pose()])[None],
        fall_prob=np.zeros((1, 4), np.float32),
        true_keypoints_m=np.stack([true] + [np.zeros_like(true)] * 3)[None],
        person_mask=np.array([[True, False, False, False]]),
        falling=np.zeros((1, 4), bool),
        room_m=np.array([[6.0, 5.0, 2.7]], np.float32),
    )
    result = acc.result()
    assert result["pck3d_150"] == pytest.approx((J - 4) / J)
    assert result["mpjpe_mm"] == pytest.approx((5 * 100 + 4 * 200) / J, rel=1e-4)
    assert result["count_accuracy"] == 1.0
    assert math.isnan(result["fall_precision"]) and math.isnan(result["fall_recall"])


def test_ap_on_a_tiny_hand_made_set() -> None:
    # one window, two persons; detections at 0.9 (hits person 0), 0.8 (miss), 0.7 (hits 1)
    scores = [np.array([0.9, 0.8, 0.7])]
    oks = [np.array([[0.9, 0.1], [0.1, 0.2], [0.3, 0.8]])]
    # ranked: TP, FP, TP → recall .5 .5 1, precision 1 .5 .667 → interpolated 1 .667 .667
    expected = (51 * 1.0 + 50 * (2 / 3)) / 101
    assert average_precision(scores, oks, 0.5) == pytest.approx(expected)
    # at 0.85 only the first detection counts: recall reaches .5 at precision 1
    assert average_precision(scores, oks, 0.85) == pytest.approx(51 / 101)
    result = oks_ap(scores, oks)
    assert result["ap50"] == pytest.approx(expected)
    assert result["ap75"] == pytest.approx(expected)


def test_ap_is_one_for_perfect_and_zero_for_missing_detections() -> None:
    perfect = oks_ap([np.array([0.9]), np.array([0.8])], [np.ones((1, 1)), np.ones((1, 1))])
    assert perfect["oks_ap"] == pytest.approx(1.0)
    empty = oks_ap([np.zeros(0)], [np.zeros((0, 2))])
    assert empty["oks_ap"] == 0.0
    assert math.isnan(average_precision([np.zeros(0)], [np.zeros((0, 0))], 0.5))


def test_a_detection_never_matches_two_persons() -> None:
    # two detections both close to person 0; person 1 is far from both
    scores = [np.array([0.9, 0.8])]
    oks = [np.array([[0.95, 0.0], [0.9, 0.0]])]
    # TP then FP: recall .5 at precision 1, never more
    assert average_precision(scores, oks, 0.5) == pytest.approx(51 / 101)


def test_counts_and_falls_per_window() -> None:
    n = 4
    presence = np.array([[0.9, 0.8, 0.1, 0.0]] * n, np.float32)  # always 2 persons predicted
    fall_prob = np.array([[0.9, 0.0, 0.0, 0.0], [0.1] * 4, [0.9, 0, 0, 0], [0, 0, 0.9, 0]])
    person_mask = np.array([[1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 0, 0]], bool)
    falling = np.array([[1, 0, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0], [0, 1, 0, 0]], bool)
    keypoints = np.broadcast_to(pose(), (n, 4, J, 3)).copy()
    acc = MetricAccumulator()
    acc.update(
        presence, keypoints, fall_prob.astype(np.float32), keypoints, person_mask, falling,
        np.tile([[6.0, 5.0, 2.7]], (n, 1)).astype(np.float32),
    )
    result = acc.result()
    assert result["count_accuracy"] == pytest.approx(3 / 4)
    # window 0: TP; 1: FN; 2: FP; 3: a fall on an undetected slot does not count → FN
    assert result["fall_precision"] == pytest.approx(1 / 2)
    assert result["fall_recall"] == pytest.approx(1 / 3)
    assert result["mpjpe_mm"] == pytest.approx(0.0)


def test_mean_pose_stats_round_trip_and_prediction() -> None:
    room = np.array([[4.0, 4.0, 2.5], [8.0, 6.0, 3.0]], np.float32)
    keypoints = np.zeros((2, 4, J, 3), np.float32)
    keypoints[0, 0] = pose((1.0, 2.0, 0.0))
    keypoints[1, 2] = pose((2.0, 1.5, 0.0))
    keypoints[1, 3] = pose((6.0, 4.5, 0.0))
    mask = np.zeros((2, 4), bool)
    mask[0, 0] = mask[1, 2] = mask[1, 3] = True
    stats = MeanPoseStats()
    stats.update(keypoints, mask, room)
    assert stats.n_persons == 3
    assert stats.count_hist == [0, 1, 1, 0, 0]
    again = MeanPoseStats.from_dict(stats.to_dict())
    presence, predicted = again.predict(np.array([[4.0, 4.0, 2.5]], np.float32), np.array([2]))
    assert presence.tolist() == [[1.0, 1.0, 0.0, 0.0]]
    # every body here is the same pose: the mean offsets reproduce it exactly
    offsets = predicted[0, 0] - predicted[0, 0, [11, 12]].mean(0)
    body = pose()
    np.testing.assert_allclose(offsets, body - body[[11, 12]].mean(0), atol=1e-5)
    # hip centres at x/W = .25, .25, .75 → mean 1.25/3 of a 4 m room
    assert predicted[0, 0, [11, 12], 0].mean() == pytest.approx(4.0 * 1.25 / 3, rel=1e-5)
