"""Training and evaluation spaces whose multi-antenna routers carry measured chain phases."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from invispose.localise.classical import ClassicalEstimator
from invispose.localise.views import views_from_batch
from invispose.sim.dataset import ARRAY_FIELDS, generate_batch, load_batch, save_batch


def _hip_errors(batch: object) -> np.ndarray:
    _, keypoints = ClassicalEstimator().predict_batch(batch)  # type: ignore[arg-type]
    one = batch.person_mask[:, 0]  # type: ignore[attr-defined]
    truth = batch.keypoints_m[:, 0, [11, 12], :2].mean(axis=1)  # type: ignore[attr-defined]
    return np.linalg.norm(keypoints[:, 0, [11, 12], :2].mean(axis=1) - truth, axis=1)[one]


def test_calibrated_spaces_are_the_same_windows_with_phases_that_place_people() -> None:
    plain = generate_batch("train", 3, 40, max_persons=1, hardware="intel5300", routers=2)
    cal = generate_batch("train", 3, 40, max_persons=1, hardware="intel5300", routers=2,
                         calibrated_rad=0.0)
    np.testing.assert_array_equal(plain.dynamic, cal.dynamic)  # the seed's windows
    assert np.all(np.isnan(plain.link_phase))  # type: ignore[arg-type]
    real = cal.link_mask
    assert np.all(np.isfinite(cal.link_phase[real]))  # type: ignore[index]
    assert np.all(np.isnan(cal.link_phase[~real]))  # type: ignore[index]
    for i in range(len(cal)):
        for r in range(int(cal.n_routers[i])):
            first = np.flatnonzero(cal.link_router[i] == r)[0]
            assert cal.link_phase[i, first] == 0.0  # type: ignore[index]
    # the phases are the devices' own: back-projection with them finds people far better
    # (measured 1.21 -> 0.41 m median on these windows)
    assert np.median(_hip_errors(cal)) < 0.6 * np.median(_hip_errors(plain))


def test_one_link_routers_stay_uncalibrated_and_shards_keep_the_phases(tmp_path: Path) -> None:
    batch = generate_batch("train", 4, 6, hardware="esp32", routers=2, calibrated_rad=0.15)
    assert np.all(np.isnan(batch.link_phase))  # type: ignore[arg-type]
    assert all(v.link_phase is None for v in views_from_batch(batch, 0))
    intel = generate_batch("train", 4, 6, hardware="intel5300", routers=1, calibrated_rad=0.15)
    assert views_from_batch(intel, 0)[0].link_phase is not None
    save_batch(intel, tmp_path / "a.npz")
    back = load_batch(tmp_path / "a.npz")
    np.testing.assert_array_equal(back.link_phase, intel.link_phase)  # type: ignore[arg-type]
    # a shard written before the field existed reads back uncalibrated
    old = {name: getattr(intel, name) for name in ARRAY_FIELDS if name != "link_phase"}
    np.savez(tmp_path / "old.npz", hardware=np.asarray(intel.hardware, dtype=str), **old)
    assert np.all(np.isnan(load_batch(tmp_path / "old.npz").link_phase))  # type: ignore[arg-type]


def test_training_data_can_come_from_calibrated_routers() -> None:
    from invispose.model.train import DataConfig, simulator_kwargs

    kwargs = simulator_kwargs(DataConfig(hardware="intel5300", calibrated_rad=0.15))
    batch = generate_batch("train", 5, 4, routers=1, **kwargs)
    assert np.all(np.isfinite(batch.link_phase[batch.link_mask]))  # type: ignore[index]
    assert np.all(np.isnan(generate_batch(
        "train", 5, 4, routers=1, **simulator_kwargs(DataConfig(hardware="intel5300"))
    ).link_phase))
