"""Phase sanitization, conjugate product, relative phase and amplitude normalisation."""

from __future__ import annotations

import numpy as np
import pytest

from invispose.csi.sanitize import (
    center_relative_phasors,
    conjugate_product,
    normalize_amplitude,
    relative_phasor,
    sanitize_phase,
)


def test_linear_ramp_plus_offset_sanitizes_to_zero(rng: np.random.Generator) -> None:
    s = np.arange(30)
    offsets = rng.uniform(-np.pi, np.pi, size=(4, 3, 1))
    slopes = rng.uniform(-0.8, 0.8, size=(4, 3, 1))  # wraps several times over 30 bins
    csi = 2.0 * np.exp(1j * (offsets + slopes * s))  # (4, 3, 30)
    out = sanitize_phase(csi)
    assert out.shape == (4, 3, 30) and out.dtype == np.float32
    np.testing.assert_allclose(out, 0.0, atol=1e-4)


def test_ripple_survives_the_line_removal() -> None:
    pos = np.linspace(-1.0, 1.0, 32)
    ripple = 0.5 * np.cos(np.pi * pos)  # even: orthogonal to the line, so only its mean goes
    csi = np.exp(1j * (1.3 - 4.0 * pos + ripple))
    out = sanitize_phase(csi, pos)
    np.testing.assert_allclose(out, ripple - ripple.mean(), atol=1e-5)


def test_odd_ripple_loses_exactly_its_least_squares_line() -> None:
    pos = np.linspace(-1.0, 1.0, 32)
    ripple = 0.3 * np.sin(3 * np.pi * pos)
    out = sanitize_phase(np.exp(1j * (0.2 + 7.0 * pos + ripple))[None, :], pos)[0]
    slope, intercept = np.polyfit(pos, ripple, 1)
    np.testing.assert_allclose(out, ripple - (slope * pos + intercept), atol=1e-5)
    assert np.abs(out).max() > 0.1  # the ripple is still there


def test_positions_must_match_subcarriers() -> None:
    with pytest.raises(ValueError, match="positions"):
        sanitize_phase(np.ones((2, 8), np.complex64), np.arange(7))


def test_conjugate_product_removes_a_common_random_offset(rng: np.random.Generator) -> None:
    n_pkt, n_rx, n_sub = 50, 3, 30
    channel = rng.normal(size=(n_rx, n_sub)) + 1j * rng.normal(size=(n_rx, n_sub))
    theta = rng.uniform(-np.pi, np.pi, size=(n_pkt, 1, 1))  # per packet, shared by antennas
    slope = rng.uniform(-0.3, 0.3, size=(n_pkt, 1, 1)) * np.arange(n_sub)  # common timing
    csi = channel * np.exp(1j * (theta + slope))  # (n_pkt, n_rx, n_sub)
    out = conjugate_product(csi, ref_rx=1)
    expected = channel * np.conj(channel[1])
    assert out.shape == (n_pkt, n_rx, n_sub) and out.dtype == np.complex64
    np.testing.assert_allclose(out, np.broadcast_to(expected, out.shape), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(out[:, 1].imag, 0.0, atol=1e-4)
    np.testing.assert_allclose(conjugate_product(csi, ref_rx=-2), out, atol=1e-6)
    with pytest.raises(ValueError, match="ref_rx"):
        conjugate_product(csi, ref_rx=3)


def relative_phase(csi: np.ndarray) -> np.ndarray:
    """The relative phase as an angle, as the model sees it before centring."""
    return np.angle(relative_phasor(csi))


def center_relative_phase(rel: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """``center_relative_phasors`` of angles."""
    return center_relative_phasors(np.exp(1j * np.asarray(rel)), valid)


def test_relative_phasor_is_a_unit_phasor_and_zero_without_signal(
    rng: np.random.Generator,
) -> None:
    csi = rng.normal(size=(6, 3, 8)) + 1j * rng.normal(size=(6, 3, 8))  # (T, L, S)
    csi[2, 0] = 0  # the reference link silent on one packet
    csi[4, 1, 3] = 0  # one link silent on one subcarrier
    out = relative_phasor(csi)
    assert out.shape == (6, 3, 8) and out.dtype == np.complex64
    silent = np.zeros(out.shape, dtype=bool)
    silent[2], silent[4, 1, 3] = True, True
    np.testing.assert_allclose(np.abs(out[~silent]), 1.0, atol=1e-6)
    assert np.all(out[silent] == 0)
    assert np.all(out[[0, 1, 3, 4, 5], 0] == 1)  # the reference is exactly 1
    # links along another axis give the same values
    moved = relative_phasor(np.moveaxis(csi, 1, 0), link_axis=0)  # (L, T, S)
    np.testing.assert_array_equal(np.moveaxis(moved, 0, 1), out)


def test_relative_phase_of_one_link_is_zero(rng: np.random.Generator) -> None:
    csi = rng.normal(size=(5, 1, 8)) + 1j * rng.normal(size=(5, 1, 8))  # (T, L, S)
    out = relative_phase(csi)
    assert out.shape == (5, 1, 8)
    assert np.all(out == 0)


def test_relative_phase_by_hand() -> None:
    csi = np.array(
        [
            [1.0, 1j],  # link 0, the reference
            [2j, 0.5j],  # pi/2 ahead on subcarrier 0, level on subcarrier 1
            [-3j, -1.0],  # pi/2 behind, then pi/2 ahead (-1 * conj(j) = j)
        ]
    )  # (L, S)
    expected = np.array([[0.0, 0.0], [np.pi / 2, 0.0], [-np.pi / 2, np.pi / 2]])
    np.testing.assert_allclose(relative_phase(csi), expected, atol=1e-6)
    with pytest.raises(ValueError, match="csi"):
        relative_phasor(np.ones(4, np.complex64))


def test_relative_phase_ignores_common_offset_and_timing(rng: np.random.Generator) -> None:
    n_pkt, n_links, n_sub = 40, 4, 30
    channel = rng.normal(size=(n_links, n_sub)) + 1j * rng.normal(size=(n_links, n_sub))
    theta = rng.uniform(-np.pi, np.pi, size=(n_pkt, 1, 1))  # per packet, all links alike
    slope = rng.uniform(-0.8, 0.8, size=(n_pkt, 1, 1)) * np.arange(n_sub)  # timing offset
    out = relative_phase(channel * np.exp(1j * (theta + slope)))  # (n_pkt, L, S)
    clean = relative_phase(channel)  # (L, S)
    assert out.shape == (n_pkt, n_links, n_sub)
    # compared on the circle: a value near pi may come out as -pi
    np.testing.assert_allclose(np.angle(np.exp(1j * (out - clean))), 0.0, atol=1e-4)
    assert np.abs(clean[1:]).max() > 1.0  # the links' own differences remain


def test_center_relative_phase_removes_a_constant(rng: np.random.Generator) -> None:
    constant = rng.uniform(-np.pi, np.pi, size=(2, 3, 1, 8))  # (N, L, 1, S)
    rel = np.broadcast_to(constant, (2, 3, 10, 8))  # (N, L, T, S)
    out = center_relative_phase(rel, np.ones((2, 10), dtype=bool))
    assert out.shape == (2, 3, 10, 8) and out.dtype == np.float32
    np.testing.assert_allclose(out, 0.0, atol=1e-5)


def test_center_relative_phase_wraps_across_pi() -> None:
    wobble = np.array([0.1, -0.1, 0.05, -0.05, 0.0, 0.08, -0.08])  # (T,) mean zero
    rel = np.angle(np.exp(1j * (np.pi + wobble)))  # (T,) jumps between +pi and -pi
    rel = np.broadcast_to(rel[None, :, None], (2, 7, 3))  # (L, T, S)
    out = center_relative_phase(rel, np.ones(7, dtype=bool))
    # the arithmetic mean would be near 0 and leave values near +-pi
    assert np.abs(out).max() < 0.2
    np.testing.assert_allclose(out, np.broadcast_to(wobble[None, :, None], out.shape), atol=1e-5)


def test_center_relative_phase_skips_invalid_steps() -> None:
    wobble = np.array([0.1, 2.5, -0.1, 0.0, -3.0])  # steps 1 and 4 are not valid
    valid = np.array([True, False, True, True, False])
    rel = (0.7 + wobble)[None, :, None]  # (L, T, S)
    out = center_relative_phase(rel, valid)
    np.testing.assert_allclose(out[0, :, 0], [0.1, 0.0, -0.1, 0.0, 0.0], atol=1e-6)
    assert not center_relative_phase(rel, np.zeros(5, dtype=bool)).any()


def test_center_relative_phase_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="relative phase"):
        center_relative_phasors(np.ones((4, 8)), np.ones(4, dtype=bool))
    with pytest.raises(ValueError, match="valid"):
        center_relative_phasors(np.ones((2, 4, 8)), np.ones(5, dtype=bool))  # T is 4


def test_normalize_amplitude_cancels_agc_and_keeps_link_ratios(rng: np.random.Generator) -> None:
    base = rng.uniform(0.5, 2.0, size=(6, 30))  # (L, S)
    base[1] *= 3.0  # a stronger link
    gains = np.array([0.1, 1.0, 37.0])[:, None, None]  # per-packet AGC
    out = normalize_amplitude(gains * base)  # (3, L, S)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[0], out[2], rtol=1e-5)
    np.testing.assert_allclose(np.sqrt(np.mean(out**2, axis=(-2, -1))), 1.0, rtol=1e-5)
    np.testing.assert_allclose(out[0, 1] / out[0, 0], base[1] / base[0], rtol=1e-5)


def test_normalize_amplitude_is_safe_for_all_zero_packets() -> None:
    amp = np.zeros((2, 4, 3, 8), np.float32)
    amp[0, 1] = 5.0
    out = normalize_amplitude(amp)  # would raise on a RuntimeWarning (pyproject filters)
    assert not out[1].any() and not out[0, 0].any()
    np.testing.assert_allclose(out[0, 1], 1.0)
