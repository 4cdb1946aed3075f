"""Dataset splits: determinism, split definitions, label statistics, shards."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from invispose.errors import SimulationError
from invispose.schemas import ACTIVITIES, MAX_PERSONS, N_KEYPOINTS
from invispose.sim.dataset import generate_batch, load_shards, write_shards
from invispose.sim.layouts import TRAIN_HEIGHTS_M, TRAIN_SIZES_M, train_layouts

ARRAYS = ("amplitude", "phase", "valid", "link_mask", "tx_pos_m", "rx_pos_m", "room_size_m",
          "keypoints_m", "person_mask", "activity", "falling")


@pytest.fixture(scope="module")
def train_batch():  # type: ignore[no-untyped-def]
    return generate_batch("train", 11, 240)


def test_same_split_and_seed_give_the_same_windows() -> None:
    a = generate_batch("val", 3, 24)
    b = generate_batch("val", 3, 24)
    for name in ARRAYS:
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert a.hardware == b.hardware


def test_other_seeds_and_splits_give_other_windows() -> None:
    a = generate_batch("train", 3, 24)
    assert not np.array_equal(a.keypoints_m, generate_batch("train", 4, 24).keypoints_m)
    assert not np.array_equal(a.keypoints_m, generate_batch("val", 3, 24).keypoints_m)


def test_batch_shapes_and_contents(train_batch) -> None:  # type: ignore[no-untyped-def]
    b = train_batch
    n, n_links = len(b), b.amplitude.shape[1]
    assert b.amplitude.shape == b.phase.shape == b.rel_phase.shape == (n, n_links, 64, 32)
    assert b.dynamic.shape == (n, n_links, 64, 32) and b.dynamic.dtype == np.complex64
    assert b.static.shape == b.subcarrier_hz.shape == (n, n_links, 32)
    assert b.amplitude.dtype == np.float32 and np.isfinite(b.amplitude).all()
    assert np.isfinite(b.phase).all() and np.isfinite(b.rel_phase).all()
    assert np.isfinite(b.dynamic).all()
    assert b.keypoints_m.shape == (n, MAX_PERSONS, N_KEYPOINTS, 3)
    names = [h.split("+") for h in b.hardware]
    assert {x for h in names for x in h} == {"esp32", "intel5300", "nexmon"}
    assert [len(h) for h in names] == b.n_routers.tolist()
    assert set(b.n_routers.tolist()) == {1, 2, 3, 4}
    # padded links are zero and belong to no router; each router's links follow the last
    pad = ~b.link_mask
    assert np.all(b.amplitude[pad] == 0) and np.all(b.dynamic[pad] == 0)
    assert np.all(b.link_router[pad] == -1) and np.all(b.carrier_hz[pad] == 0)
    sizes = {"esp32": {1}, "nexmon": {1}, "intel5300": {3, 6, 9}}
    for i in range(n):
        routers = b.link_router[i][b.link_mask[i]]
        assert np.all(np.diff(routers) >= 0) and routers.max() == b.n_routers[i] - 1
        for r, name in enumerate(names[i]):
            links = b.link_router[i] == r
            assert int(links.sum()) in sizes[name]
            first = np.flatnonzero(links)[0]
            assert np.all(b.rel_phase[i, first] == 0)  # each router's reference link
            carrier = {"esp32": 2.437e9, "intel5300": 5.18e9, "nexmon": 5.21e9}[name]
            assert np.allclose(b.carrier_hz[i, links], carrier)
            amp = b.amplitude[i, links]  # (L_r, T, S): RMS 1 per router window
            steps = np.any(amp != 0, axis=(0, 2))  # (T,) this router's packets
            assert np.sqrt((amp**2).sum() / (links.sum() * steps.sum() * 32)) == pytest.approx(
                1.0, abs=1e-3)
            assert not np.any(b.valid[i] & ~steps)  # valid: every router had a packet
    assert 0.7 < b.valid.mean() < 1.0
    # empty person slots are empty, people stand inside their rooms
    assert np.all(b.activity[~b.person_mask] == -1) and np.all(b.activity[b.person_mask] >= 0)
    hips = b.keypoints_m[:, :, 11]  # (N, P, 3)
    size = b.room_size_m[:, None, :]
    inside = (hips[..., :2] > 0) & (hips[..., :2] < size[..., :2])
    assert inside[b.person_mask].all()


def test_routers_of_a_space_see_the_same_people_from_other_places() -> None:
    one = generate_batch("val", 5, 8, routers=1)
    two = generate_batch("val", 5, 8, routers=2)
    assert np.all(two.n_routers == 2) and np.all(one.n_routers == 1)
    assert {0, 1} <= set(np.unique(two.link_router).tolist()) <= {-1, 0, 1}
    for i in range(len(two)):
        first, second = two.link_router[i] == 0, two.link_router[i] == 1
        assert not np.allclose(two.tx_pos_m[i, first][0], two.tx_pos_m[i, second][0])
    with pytest.raises(SimulationError):
        generate_batch("val", 0, 2, routers=5)


def test_people_and_activities_cover_the_classes(train_batch) -> None:  # type: ignore[no-untyped-def]
    b = train_batch
    counts = np.bincount(b.person_mask.sum(1), minlength=MAX_PERSONS + 1)
    assert np.all(counts > 0)
    assert counts[:3].sum() > counts[3:].sum()  # weighted towards 0-2 people
    labels = np.bincount(b.activity[b.person_mask].astype(int), minlength=len(ACTIVITIES))
    assert np.all(labels > 0)
    assert b.falling.any(axis=1).mean() >= 0.10
    assert np.all(b.activity[b.falling] == ACTIVITIES.index("fallen"))


def test_training_layouts_are_a_finite_family() -> None:
    family = train_layouts()
    b = generate_batch("same-layout", 2, 60)
    sizes = {tuple(s) for s in family.size_m.astype(np.float32).round(3)}
    assert all(tuple(s) in sizes for s in b.room_size_m.round(3))


def test_cross_layout_rooms_were_never_trained_on() -> None:
    b = generate_batch("cross-layout", 0, 40)
    for axis in (0, 1):
        gap = np.abs(b.room_size_m[:, axis, None] - TRAIN_SIZES_M[None]).min(axis=1)
        assert np.all(gap > 0.05)
    gap = np.abs(b.room_size_m[:, 2, None] - TRAIN_HEIGHTS_M[None]).min(axis=1)
    assert np.all(gap > 0.05)
    assert {x for h in b.hardware for x in h.split("+")} <= {"esp32", "intel5300", "nexmon"}


def test_cross_hardware_is_the_held_out_profile() -> None:
    b = generate_batch("cross-hardware", 0, 12)
    assert {x for h in b.hardware for x in h.split("+")} == {"atheros"}
    assert np.all(b.link_mask.sum(1) == 9 * b.n_routers)
    with pytest.raises(SimulationError):
        generate_batch("train", 0, 4, hardware="atheros")
    with pytest.raises(SimulationError):
        generate_batch("nope", 0, 4)


def test_exact_receiver_path_matches_the_fast_path_statistically() -> None:
    fast = generate_batch("train", 9, 60, hardware="intel5300")
    exact = generate_batch("train", 9, 60, hardware="intel5300", exact_receiver=True)
    assert np.array_equal(fast.keypoints_m, exact.keypoints_m)  # same scenes

    def used(b):  # type: ignore[no-untyped-def]
        mask = b.link_mask[:, :, None, None] & b.valid[:, None, :, None]
        return np.broadcast_to(mask, b.amplitude.shape)

    qs = [0.1, 0.5, 0.9]
    fast_amp, exact_amp = fast.amplitude[used(fast)], exact.amplitude[used(exact)]
    assert np.quantile(fast_amp, qs) == pytest.approx(np.quantile(exact_amp, qs), abs=0.06)
    fast_phase, exact_phase = fast.phase[used(fast)], exact.phase[used(exact)]
    assert np.std(fast_phase) == pytest.approx(np.std(exact_phase), rel=0.25)
    # relative phase: chain phases, carrier phase and timing cancel on both paths alike
    fast_rel, exact_rel = fast.rel_phase[used(fast)], exact.rel_phase[used(exact)]
    assert np.std(fast_rel) == pytest.approx(np.std(exact_rel), rel=0.25)


def test_shards_round_trip(tmp_path: Path) -> None:
    paths = write_shards("val", 5, 30, tmp_path, shard_size=12)
    assert [p.name for p in paths] == ["val-5-00000.npz", "val-5-00001.npz", "val-5-00002.npz"]
    loaded = load_shards(tmp_path)
    assert len(loaded) == 30 and len(loaded.hardware) == 30
    first = generate_batch("val", 5 * 100_003, 12)
    n_links = first.amplitude.shape[1]
    assert np.array_equal(loaded.amplitude[:12, :n_links], first.amplitude)
    assert np.array_equal(loaded.keypoints_m[:12], first.keypoints_m)
