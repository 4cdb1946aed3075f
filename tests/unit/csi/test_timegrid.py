"""Resampling irregular packet times onto the uniform time grid."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from invispose.csi.timegrid import nearest_indices, resample_time, time_grid


def test_grid_ends_at_t_end() -> None:
    grid = time_grid(10.0, 100.0, 5)
    np.testing.assert_allclose(grid, [9.96, 9.97, 9.98, 9.99, 10.0])


def test_regular_packets_fill_every_point() -> None:
    times = 5.0 + np.arange(200) / 100.0 + 0.002  # 2 ms behind the grid
    values = np.arange(200, dtype=np.float32)[:, None] * np.ones((1, 3), np.float32)
    out, valid = resample_time(times, values, t_end_s=times[-1], rate_hz=100.0, n_samples=64)
    assert out.shape == (64, 3) and out.dtype == np.float32
    assert valid.all()
    np.testing.assert_array_equal(out[:, 0], np.arange(136, 200))


def test_gaps_are_marked_invalid_and_zero() -> None:
    times = np.arange(100) / 100.0
    keep = (times < 0.30) | (times >= 0.50)  # a 200 ms hole
    values = np.arange(100, dtype=np.float64)[keep] + 1.0  # (N,) all non-zero
    out, valid = resample_time(times[keep], values, 0.99, 100.0, 100)
    # 1.5 grid periods reach: 0.30 still sees the packet at 0.29, 0.49 sees 0.50
    expected = ~((times > 0.305) & (times < 0.485))
    np.testing.assert_array_equal(valid, expected)
    assert not out[~valid].any()
    assert out[valid].all()
    out2, valid2 = resample_time(times[keep], values, 0.99, 100.0, 100, max_gap_s=0.001)
    np.testing.assert_array_equal(valid2, keep)


def test_unsorted_times_and_duplicates(rng: np.random.Generator) -> None:
    times = np.arange(20) / 10.0
    perm = rng.permutation(times.size)
    values = times * 10
    out, valid = resample_time(times[perm], values[perm], 1.9, 10.0, 20)
    assert valid.all()
    np.testing.assert_allclose(out, values)
    # a duplicate time: the later packet (input order) wins
    dup_t = np.array([0.0, 0.1, 0.1, 0.2])
    dup_v = np.array([1.0, 2.0, 3.0, 4.0])
    out, valid = resample_time(dup_t, dup_v, 0.2, 10.0, 3)
    np.testing.assert_allclose(out, [1.0, 3.0, 4.0])


def test_empty_input_gives_zeros_and_no_valid_point() -> None:
    out, valid = resample_time(np.zeros(0), np.zeros((0, 2, 4), np.complex64), 3.0, 100.0, 8)
    assert out.shape == (8, 2, 4) and out.dtype == np.complex64
    assert not valid.any() and not out.any()


def test_intel_bursts_and_sparse_nexmon() -> None:
    # 1 kHz bursts of 50 packets every 0.5 s: grid points inside bursts are valid
    burst = np.concatenate([b * 0.5 + np.arange(50) / 1000.0 for b in range(4)])
    _, valid = resample_time(burst, np.ones(burst.size), 1.6, 100.0, 100)
    grid = time_grid(1.6, 100.0, 100)
    in_burst = np.zeros_like(valid)
    for b in range(4):
        in_burst |= (grid >= b * 0.5 - 0.015) & (grid <= b * 0.5 + 0.049 + 0.015)
    np.testing.assert_array_equal(valid, in_burst)
    # 10 Hz on a 100 Hz grid: each packet fills the 3 grid points within 15 ms
    sparse = np.arange(10) / 10.0
    index, valid = nearest_indices(sparse, time_grid(0.9, 100.0, 91), 0.015)
    assert valid.sum() == 3 * 10 - 2  # first and last packet sit at the grid's ends
    np.testing.assert_array_equal(index[valid][:3], [0, 0, 1])


def test_non_finite_times_are_never_chosen() -> None:
    times = np.array([0.0, np.nan, 0.02, np.inf])
    index, valid = nearest_indices(times, np.array([0.0, 0.01, 0.02, 0.03]), 0.015)
    np.testing.assert_array_equal(valid, [True, True, True, True])
    assert set(index.tolist()) <= {0, 2}


def test_values_must_match_times() -> None:
    with pytest.raises(ValueError, match="one row per time"):
        resample_time(np.arange(3.0), np.zeros(4), 1.0, 10.0, 5)


@settings(max_examples=60, deadline=None)
@given(
    times=st.lists(st.integers(0, 400), min_size=0, max_size=40),
    t_end_ms=st.integers(0, 500),
    gap_ms=st.integers(0, 30),
)
def test_nearest_packet_matches_brute_force(times: list[int], t_end_ms: int, gap_ms: int) -> None:
    t = np.asarray(times, dtype=np.float64) / 1000.0  # whole milliseconds
    values = np.arange(t.size, dtype=np.float64) + 1.0
    out, valid = resample_time(t, values, t_end_ms / 1000.0, 100.0, 16, max_gap_s=gap_ms / 1000.0)
    for g, (o, v) in zip(
        time_grid(t_end_ms / 1000.0, 100.0, 16), zip(out, valid, strict=True), strict=True
    ):
        dist = np.abs(t - g) if t.size else np.zeros(0)
        assert v == bool(t.size and dist.min() <= gap_ms / 1000.0 + 1e-9)
        if v:
            assert abs(t[int(o) - 1] - g) == pytest.approx(dist.min())
        else:
            assert o == 0
