"""Location metrics against hand-built windows."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from invispose.model.location_metrics import LocationAccumulator, hip_centre
from invispose.schemas import ACTIVITIES, N_KEYPOINTS

J = N_KEYPOINTS
WALK = ACTIVITIES.index("walking")
SIT = ACTIVITIES.index("sitting")
FAR = (50.0, 50.0)  # floor position of a slot that is nowhere near anyone


def body(rng: np.random.Generator, x: float, y: float) -> np.ndarray:
    """A random (J, 3) pose whose hip centre stands at (x, y, 1.0)."""
    joints = rng.normal(0.0, 0.3, (J, 3)).astype(np.float32)
    joints -= hip_centre(joints)
    return joints + np.array([x, y, 1.0], np.float32)


def scene(
    seed: int, positions: list[list[tuple[float, float]]], p: int = 4
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True keypoints (N, P, J, 3), mask (N, P), activity (N, P) for per-window positions."""
    rng = np.random.default_rng(seed)
    n = len(positions)
    keypoints = np.zeros((n, p, J, 3), np.float32)
    mask = np.zeros((n, p), bool)
    activity = np.full((n, p), -1, np.int8)
    for i, window in enumerate(positions):
        for j, (x, y) in enumerate(window):
            keypoints[i, j] = body(rng, x, y)
            mask[i, j] = True
            activity[i, j] = WALK
    return keypoints, mask, activity


def perfect(mask: np.ndarray) -> np.ndarray:
    """Presence (N, K) that reports exactly the true persons, in their own slots."""
    return np.where(mask, 0.9, 0.1).astype(np.float32)


def routers(n: int, value: int = 3) -> np.ndarray:
    return np.full(n, value, np.int64)


def nan_to_none(value: object) -> object:
    """NaN replaced by None anywhere in a nested result; checks only plain types remain."""
    if isinstance(value, dict):
        return {k: nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [nan_to_none(v) for v in value]
    assert type(value) in (int, float, str), f"{value!r} is a {type(value)}"
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def test_hip_centre_is_the_mean_of_the_hips() -> None:
    rng = np.random.default_rng(0)
    keypoints = rng.normal(size=(2, 3, J, 3)).astype(np.float32)
    centre = hip_centre(keypoints)
    assert centre.shape == (2, 3, 3)
    np.testing.assert_allclose(centre, (keypoints[..., 11, :] + keypoints[..., 12, :]) / 2)


def test_perfect_predictions_score_zero_error_and_full_count_accuracy() -> None:
    true, mask, activity = scene(1, [[(1.0, 1.0)], [(1.0, 2.0), (3.0, 1.0)], [], [(2, 2)] * 4])
    acc = LocationAccumulator()
    acc.update(perfect(mask), true, true, mask, activity, routers(4))
    out = acc.result()
    assert out["root_error_m"] == {"median": 0.0, "p90": 0.0}
    assert out["root_relative_mpjpe_mm"] == 0.0
    assert out["count_accuracy"] == 1.0
    assert out["persons"] == 7
    assert out["windows"] == 4


def test_a_shift_of_30_cm_in_x_gives_a_median_of_30_cm() -> None:
    true, mask, activity = scene(2, [[(1.0, 1.0), (3.0, 2.5)], [(2.0, 4.0)]])
    pred = true + np.array([0.3, 0.0, 0.0], np.float32)
    acc = LocationAccumulator()
    acc.update(perfect(mask), pred, true, mask, activity, routers(2))
    out = acc.result()
    root = out["root_error_m"]
    assert isinstance(root, dict)
    assert root["median"] == pytest.approx(0.3, abs=1e-6)
    assert root["p90"] == pytest.approx(0.3, abs=1e-6)
    # the whole body moved with its hips, so the root-relative pose is untouched
    assert out["root_relative_mpjpe_mm"] == pytest.approx(0.0, abs=1e-3)


def test_root_relative_mpjpe_is_in_millimetres_and_ignores_position() -> None:
    true, mask, activity = scene(3, [[(1.0, 1.0)]])
    pred = true.copy()
    pred[0, 0, 0, 2] += 0.17  # the nose 17 cm up: 10 mm averaged over 17 joints
    pred[0, 0] += np.array([2.0, -1.0, 0.5], np.float32)  # and the whole body elsewhere
    acc = LocationAccumulator()
    acc.update(perfect(mask), pred, true, mask, activity, routers(1))
    out = acc.result()
    assert out["root_relative_mpjpe_mm"] == pytest.approx(10.0, abs=1e-3)
    assert out["root_error_m"] == {"median": pytest.approx(math.sqrt(5.0), abs=1e-5),
                                   "p90": pytest.approx(math.sqrt(5.0), abs=1e-5)}


def two_slot_case() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Slot 0 exact on person A (presence .9), slot 1 far away (.2), slot 2 on B but .1."""
    true, mask, activity = scene(4, [[(1.0, 1.0), (3.0, 3.0)]])
    pred = np.zeros_like(true)
    pred[0, 0] = true[0, 0]
    pred[0, 1] = true[0, 0] - hip_centre(true[0, 0]) + np.array([*FAR, 1.0], np.float32)
    pred[0, 2] = true[0, 1]
    pred[0, 3] = pred[0, 1]
    presence = np.array([[0.9, 0.2, 0.1, 0.05]], np.float32)
    return presence, pred, true, activity


def test_top_c_ignores_a_far_low_presence_slot_when_one_person_is_there() -> None:
    presence, pred, true, activity = two_slot_case()
    mask = np.array([[True, False, False, False]])  # only A
    acc = LocationAccumulator()
    acc.update(presence, pred, true, mask, activity, routers(1))
    out = acc.result()
    assert out["root_error_m"] == {"median": 0.0, "p90": 0.0}
    assert out["persons"] == 1


def test_top_c_uses_the_second_slot_when_two_people_are_there() -> None:
    presence, pred, true, activity = two_slot_case()
    mask = np.array([[True, True, False, False]])  # A and B
    acc = LocationAccumulator()
    acc.update(presence, pred, true, mask, activity, routers(1))
    out = acc.result()
    root = out["root_error_m"]
    assert isinstance(root, dict)
    # B is matched to the far slot 1 (second most present), not to the exact slot 2
    far = math.dist(FAR, (3.0, 3.0))
    assert root["median"] == pytest.approx(far / 2, rel=1e-5)
    assert root["p90"] == pytest.approx(0.9 * far, rel=1e-5)
    assert out["persons"] == 2


def test_a_model_reporting_nobody_is_still_located_at_its_top_slots() -> None:
    true, mask, activity = scene(5, [[(1.0, 1.0), (2.0, 3.0)]])
    pred = true[:, [1, 0, 2, 3]] + np.array([0.0, 0.4, 0.0], np.float32)  # persons swapped
    presence = np.array([[0.3, 0.4, 0.01, 0.02]], np.float32)  # all below the threshold
    acc = LocationAccumulator()
    acc.update(presence, pred, true, mask, activity, routers(1, value=2))
    out = acc.result()
    assert out["persons"] == 2
    assert out["root_error_m"] == {"median": pytest.approx(0.4, abs=1e-6),
                                   "p90": pytest.approx(0.4, abs=1e-6)}
    assert out["count_accuracy"] == 0.0
    confusion = out["count_confusion"]
    assert isinstance(confusion, list)
    assert confusion[2][0] == 1


def test_confusion_matrix_of_a_hand_built_case() -> None:
    # true counts 0, 1, 1, 2, 3, 2 against reported 0, 1, 2, 2, 7 (clipped to 4), 1
    true, mask, activity = scene(
        6, [[], [(1, 1)], [(2, 2)], [(1, 1), (3, 3)], [(1, 1), (2, 2), (3, 3)], [(1, 1), (2, 2)]]
    )
    reported = np.array([0, 1, 2, 2, 7, 1])
    acc = LocationAccumulator(max_persons=4)
    acc.update(perfect(mask), true, true, mask, activity, routers(6), count=reported)
    out = acc.result()
    expected = np.zeros((5, 5), int)
    for t, r in [(0, 0), (1, 1), (1, 2), (2, 2), (3, 4), (2, 1)]:
        expected[t, r] += 1
    assert out["count_confusion"] == expected.tolist()
    assert out["count_accuracy"] == pytest.approx(3 / 6)
    assert out["one_person_exactly_one"] == pytest.approx(1 / 2)


def test_default_count_uses_the_presence_threshold() -> None:
    true, mask, activity = scene(7, [[(1, 1)], [(1, 1)], [(1, 1)]])
    presence = np.array([[0.6, 0, 0, 0], [0.6, 0.55, 0, 0], [0.4, 0, 0, 0]], np.float32)
    acc = LocationAccumulator(presence_threshold=0.5)
    acc.update(presence, true, true, mask, activity, routers(3))
    out = acc.result()
    assert out["one_person_exactly_one"] == pytest.approx(1 / 3)
    confusion = out["count_confusion"]
    assert isinstance(confusion, list)
    assert confusion[1] == [1, 1, 1, 0, 0]


def test_by_routers_and_by_motion_split_correctly() -> None:
    # window 0: one router, two people (0.1 m and 0.5 m off); window 1: four routers, one
    # person (0.2 m off) whose count is wrong; window 2: one router, nobody
    true, mask, activity = scene(8, [[(1, 1), (4, 4)], [(2, 2)], []])
    activity[0, 1] = SIT
    pred = true.copy()
    pred[0, 0, :, 0] += 0.1
    pred[0, 1, :, 1] += 0.5
    pred[1, 0, :, 0] -= 0.2
    reported = np.array([2, 3, 0])
    acc = LocationAccumulator()
    acc.update(perfect(mask), pred, true, mask, activity, np.array([1, 4, 1]), count=reported)
    out = acc.result()

    by_routers = out["by_routers"]
    assert isinstance(by_routers, dict)
    assert sorted(by_routers) == ["1", "4"]
    one, four = by_routers["1"], by_routers["4"]
    assert (one["windows"], one["persons"], four["windows"], four["persons"]) == (2, 2, 1, 1)
    assert one["count_accuracy"] == 1.0
    assert four["count_accuracy"] == 0.0
    assert one["root_error_m"]["median"] == pytest.approx(0.3, abs=1e-6)
    assert four["root_error_m"]["median"] == pytest.approx(0.2, abs=1e-6)
    assert four["one_person_exactly_one"] == 0.0
    assert math.isnan(one["one_person_exactly_one"])

    by_motion = out["by_motion"]
    assert isinstance(by_motion, dict)
    assert set(by_motion) == {"walking", "still"}
    walking, still = by_motion["walking"], by_motion["still"]
    assert set(walking) == {"root_error_m", "root_relative_mpjpe_mm", "persons"}
    assert (walking["persons"], still["persons"]) == (2, 1)
    assert still["root_error_m"]["median"] == pytest.approx(0.5, abs=1e-6)
    assert walking["root_error_m"]["median"] == pytest.approx(0.15, abs=1e-6)
    assert walking["root_error_m"]["p90"] == pytest.approx(0.19, abs=1e-6)


def test_updates_accumulate() -> None:
    true, mask, activity = scene(9, [[(1, 1)], [(2, 2), (3, 3)]])
    pred = true + np.array([0.1, 0.0, 0.0], np.float32)
    whole, parts = LocationAccumulator(), LocationAccumulator()
    whole.update(perfect(mask), pred, true, mask, activity, routers(2))
    for i in range(2):
        s = slice(i, i + 1)
        parts.update(perfect(mask)[s], pred[s], true[s], mask[s], activity[s], routers(1))
    assert json.dumps(nan_to_none(whole.result())) == json.dumps(nan_to_none(parts.result()))


def test_empty_groups_are_nan_not_errors() -> None:
    acc = LocationAccumulator()
    out = acc.result()
    assert math.isnan(out["root_error_m"]["median"])
    assert math.isnan(out["root_relative_mpjpe_mm"])
    assert math.isnan(out["count_accuracy"])
    assert out["by_routers"] == {}
    assert out["by_motion"]["still"]["persons"] == 0

    # nobody sits: "still" is empty while "walking" is scored
    true, mask, activity = scene(10, [[(1, 1)]])
    acc.update(perfect(mask), true, true, mask, activity, routers(1))
    still = acc.result()["by_motion"]["still"]
    assert still["persons"] == 0
    assert math.isnan(still["root_error_m"]["median"])
    assert math.isnan(still["root_error_m"]["p90"])
    assert math.isnan(still["root_relative_mpjpe_mm"])


def test_result_round_trips_through_json_after_nan_to_none() -> None:
    rng = np.random.default_rng(11)
    n, k = 20, 4
    mask = rng.random((n, k)) < 0.4
    positions = [[(float(x), float(y)) for x, y in rng.uniform(0, 5, (int(m.sum()), 2))]
                 for m in mask]
    true, mask, activity = scene(11, positions)
    activity[mask] = rng.integers(0, len(ACTIVITIES), int(mask.sum()))
    pred = true + rng.normal(0, 0.2, true.shape).astype(np.float32)
    presence = rng.random((n, k)).astype(np.float32)
    acc = LocationAccumulator()
    acc.update(presence, pred, true, mask, activity, rng.integers(1, 5, n))
    out = acc.result()
    text = json.dumps(nan_to_none(out), allow_nan=False)
    assert json.loads(text) == nan_to_none(out)
    assert out["persons"] == int(mask.sum())


def test_bad_shapes_name_the_array() -> None:
    true, mask, activity = scene(12, [[(1, 1)]])
    acc = LocationAccumulator()
    with pytest.raises(ValueError, match="n_routers"):
        acc.update(perfect(mask), true, true, mask, activity, routers(2))
    with pytest.raises(ValueError, match="true persons"):
        acc.update(perfect(mask)[:, :0], true[:, :0], true, mask, activity, routers(1))


def test_motion_follows_the_true_person_not_the_predicted_slot() -> None:
    true, mask, activity = scene(13, [[(1.0, 1.0), (3.0, 1.0), (1.0, 4.0)]])
    activity[0, 2] = SIT
    pred = true[:, [2, 0, 1, 3]].copy()  # slot s predicts true person [2, 0, 1][s]
    pred[0, 0, :, 0] += 0.25  # the sitter, 25 cm off
    pred[0, 1, :, 1] += 0.05
    pred[0, 2, :, 1] += 0.10
    acc = LocationAccumulator()
    acc.update(perfect(mask), pred, true, mask, activity, routers(1))
    by_motion = acc.result()["by_motion"]
    assert isinstance(by_motion, dict)
    assert by_motion["still"]["persons"] == 1
    assert by_motion["still"]["root_error_m"]["median"] == pytest.approx(0.25, abs=1e-6)
    assert by_motion["walking"]["root_error_m"]["median"] == pytest.approx(0.075, abs=1e-6)
