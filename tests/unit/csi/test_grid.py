"""The canonical subcarrier grid: data subcarriers, kept bins, interpolation."""

from __future__ import annotations

import numpy as np
import pytest

from invispose.csi.grid import (
    N_CANONICAL,
    canonical_positions,
    data_subcarriers,
    kept_mask,
    to_canonical,
)

INTEL_20 = np.array(
    [-28, -26, -24, -22, -20, -18, -16, -14, -12, -10, -8, -6, -4, -2, -1,
     1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 28]
)  # fmt: skip
INTEL_40 = np.concatenate([np.arange(-58, -1, 4), np.arange(2, 59, 4)])


def smooth_channel(k: np.ndarray) -> np.ndarray:
    """A smooth known channel over subcarrier index: ripple, offset and timing slope."""
    amp = 1.0 + 0.3 * np.cos(2 * np.pi * k / 60.0)
    phase = 0.9 + 0.15 * k + 0.4 * np.sin(2 * np.pi * k / 80.0)
    return amp * np.exp(1j * phase)


# (name, indices, bandwidth, bins that carry values, expected kept span)
HARDWARE = [
    ("esp32_lltf", np.arange(-32, 32), 20, lambda k: (np.abs(k) <= 26) & (k != 0), (-26, 26)),
    ("esp32_ht20", np.arange(-32, 32), 20, lambda k: (np.abs(k) <= 28) & (k != 0), (-28, 28)),
    (
        "esp32_ht40",
        np.arange(-64, 64),
        40,
        lambda k: (np.abs(k) <= 58) & (np.abs(k) > 1),
        (-58, 58),
    ),
    ("intel_20", INTEL_20, 20, lambda k: np.ones(k.shape, bool), (-28, 28)),
    ("intel_40", INTEL_40, 40, lambda k: np.ones(k.shape, bool), (-58, 58)),
    ("nexmon_20", np.arange(-32, 32), 20, lambda k: np.ones(k.shape, bool), (-28, 28)),
    ("nexmon_80", np.arange(-128, 128), 80, lambda k: np.ones(k.shape, bool), (-122, 122)),
]


def test_data_subcarrier_counts_and_exclusions() -> None:
    expected = {20: (52, 28, [7, 21]), 40: (108, 58, [11, 25, 53]),
                80: (234, 122, [11, 39, 75, 103]), 160: (468, 250, [25, 231])}  # fmt: skip
    for bw, (count, edge, pilots) in expected.items():
        sub = data_subcarriers(bw)
        assert sub.size == count
        assert np.all(np.diff(sub) > 0)
        assert sub.min() == -edge and sub.max() == edge
        assert 0 not in sub
        if bw > 20:
            assert 1 not in sub and -1 not in sub
        for p in pilots:
            assert p not in sub and -p not in sub
    assert 1 in data_subcarriers(20) and -1 in data_subcarriers(20)
    assert not np.isin([-1, 1, 128, -128, 5], data_subcarriers(160)).any()


def test_unsupported_bandwidth_is_refused() -> None:
    with pytest.raises(ValueError, match="bandwidth"):
        data_subcarriers(30)


def test_intel_groups_are_all_kept_and_zero_bins_dropped() -> None:
    assert kept_mask(INTEL_20, 20).all()
    assert kept_mask(INTEL_40, 40).all()
    esp = np.arange(-32, 32)
    csi = np.where((np.abs(esp) <= 26) & (esp != 0), 1 + 1j, 0).astype(np.complex64)
    kept = esp[kept_mask(esp, 20, csi)]
    assert kept.min() == -26 and kept.max() == 26
    assert kept.size == 48  # 52 LLTF bins minus 4 pilots
    nexmon = np.arange(-128, 128)
    assert np.array_equal(nexmon[kept_mask(nexmon, 80)], data_subcarriers(80))


@pytest.mark.parametrize(("name", "indices", "bw", "filled", "span"), HARDWARE)
def test_smooth_channel_is_reproduced_on_the_canonical_grid(
    name: str, indices: np.ndarray, bw: int, filled: object, span: tuple[int, int]
) -> None:
    k = indices.astype(np.float64)
    csi = np.where(filled(k), smooth_channel(k), 0).astype(np.complex64)  # type: ignore[operator]
    out = to_canonical(csi, indices, bw)
    lo, hi = span
    x = lo + (hi - lo) * (canonical_positions() + 1.0) / 2.0
    expected = smooth_channel(x.astype(np.float64))
    assert out.shape == (N_CANONICAL,) and out.dtype == np.complex64
    np.testing.assert_allclose(out, expected, atol=0.01, err_msg=name)


def test_steep_phase_slope_survives_resampling() -> None:
    # 2.5 rad per subcarrier: neighbouring canonical points are ~20 rad apart
    k = np.arange(-128, 128)
    csi = np.exp(1j * (0.3 + 2.5 * k)).astype(np.complex64)
    out = to_canonical(csi, k, 80)
    x = -122 + 244 * (canonical_positions().astype(np.float64) + 1.0) / 2.0
    np.testing.assert_allclose(np.abs(out), 1.0, atol=1e-3)  # no chord shortening
    np.testing.assert_allclose(out, np.exp(1j * (0.3 + 2.5 * x)), atol=5e-3)


def test_leading_batch_dims_are_independent(rng: np.random.Generator) -> None:
    k = np.arange(-32, 32)
    shape = (2, 3, 4, k.size)
    csi = (rng.normal(size=shape) + 1j * rng.normal(size=shape)).astype(np.complex64)
    out = to_canonical(csi, k, 20, n_out=16)
    assert out.shape == (2, 3, 4, 16)
    np.testing.assert_allclose(out[1, 2, 3], to_canonical(csi[1, 2, 3], k, 20, 16), atol=1e-5)


def test_all_zero_input_maps_to_zeros_and_too_few_bins_raise() -> None:
    k = np.arange(-32, 32)
    out = to_canonical(np.zeros((5, k.size), np.complex64), k, 20)
    assert out.shape == (5, N_CANONICAL) and not out.any()
    with pytest.raises(ValueError, match="usable"):
        to_canonical(np.ones(2, np.complex64), np.array([0, 30]), 20)


def test_canonical_positions_span_minus_one_to_one() -> None:
    pos = canonical_positions(8)
    assert pos.dtype == np.float32 and pos[0] == -1.0 and pos[-1] == 1.0
    assert np.allclose(np.diff(pos), 2 / 7)


def test_narrow_transmission_in_a_wide_channel_keeps_only_its_band(
    rng: np.random.Generator,
) -> None:
    # a 20 MHz non-HT frame in the lowest sub-channel of an 80 MHz capture (bcm4366c0)
    k = np.arange(-128, 128)
    noise = 0.003 * (rng.normal(size=(20, k.size)) + 1j * rng.normal(size=(20, k.size)))
    occupied = (np.abs(k + 96) <= 26) & (k != -96)
    csi = np.where(occupied, smooth_channel(k.astype(float)), 0) + noise  # (20, 256)
    csi[:, k == 2] = 5.0  # a leakage spike next to DC, in an empty sub-channel
    csi[:, k == -100] *= 0.05  # a genuine 26 dB fade stays
    kept = k[kept_mask(k, 80, csi)]
    assert kept.min() == -122 and kept.max() == -70
    assert -96 not in kept and -100 in kept and 2 not in kept
    out = to_canonical(csi, k, 80)
    x = -122 + 52 * (canonical_positions() + 1.0) / 2.0
    away = np.abs(x - (-100)) > 2  # the canonical point next to the fade dips with it
    np.testing.assert_allclose(
        np.abs(out[:, away]).mean(axis=0), np.abs(smooth_channel(x[away].astype(float))), rtol=0.02
    )
    assert np.abs(out[:, ~away]).min(axis=1).max() < 0.3
