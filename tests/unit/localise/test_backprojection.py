"""Back-projection: a mover's echo is found where it is, with unknown chain phases."""

from __future__ import annotations

import numpy as np
import pytest

from invispose.csi.dynamic import window_dynamic
from invispose.localise.backprojection import (
    SPEED_OF_LIGHT_MPS,
    Calibration,
    RouterView,
    calibrate_from_static,
    heatmap,
    image_path_lengths_m,
    removed_basis,
    transmit_streams,
)
from invispose.localise.floor import FloorLocaliser, floor_grid
from invispose.sim.hardware import SUBCARRIER_SPACING_HZ, canonical_offsets

ROOM = np.array([5.0, 4.0, 2.7])
CARRIER_HZ = 5.18e9
SUB_HZ = (canonical_offsets("intel5300") * SUBCARRIER_SPACING_HZ).astype(np.float32)  # (S,)
T = 64


def array_3(centre: list[float], axis: list[float]) -> np.ndarray:
    """Three elements 2.9 cm apart (half a wavelength at 5 GHz)."""
    offsets = (np.arange(3) - 1.0) * 0.029
    return np.asarray(centre) + offsets[:, None] * np.asarray(axis)  # (3, 3)


def links(tx: np.ndarray, rx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Tx-major link endpoints (9, 3) each."""
    return np.repeat(tx, 3, 0).astype(np.float32), np.tile(rx, (3, 1)).astype(np.float32)


def paths(tx: np.ndarray, rx: np.ndarray, points: np.ndarray) -> np.ndarray:
    """exp(−j2π f d / c) of tx → point → rx for points (..., 3): (..., L, S)."""
    d = (np.linalg.norm(points[..., None, :] - tx, axis=-1)
         + np.linalg.norm(rx - points[..., None, :], axis=-1))  # (..., L)
    f = CARRIER_HZ + SUB_HZ.astype(np.float64)  # (S,)
    return np.exp(-2j * np.pi * d[..., None] * f / SPEED_OF_LIGHT_MPS)


def router_window(
    rng: np.random.Generator, tx: np.ndarray, rx: np.ndarray, start: list[float],
    velocity: list[float], echo_db: float = -20.0, snr_db: float = 30.0,
    turn_rad: float = 0.0,
) -> tuple[RouterView, np.ndarray]:
    """A walker's window through a receiver with unknown chain phases; view and end point.

    The view's ``link_phase`` holds the true chain phases (unused unless a test keeps
    them); ``turn_rad``: the residual CFO's per-packet turn of each transmit stream.
    """
    ltx, lrx = links(tx, rx)
    t = np.arange(T)[:, None] / 100.0
    walk = np.asarray(start) + t * np.asarray(velocity)  # (T, 3)
    direct = np.linalg.norm(lrx - ltx, axis=-1)  # (L,)
    f = CARRIER_HZ + SUB_HZ.astype(np.float64)
    los = np.exp(-2j * np.pi * direct[:, None] * f / SPEED_OF_LIGHT_MPS)  # (L, S)
    # one wall reflection, weaker than the direct path, as a room adds
    image = ltx.copy()
    image[:, 1] = -ltx[:, 1]
    wall = 0.3 * np.exp(-2j * np.pi * np.linalg.norm(lrx - image, axis=-1)[:, None] * f
                        / SPEED_OF_LIGHT_MPS)
    echo = 10 ** (echo_db / 20) * paths(ltx, lrx, walk)  # (T, L, S)
    h = (los + wall)[None] + echo
    theta = rng.uniform(-np.pi, np.pi, 9)
    chains = np.exp(1j * theta)[None, :, None]  # per tx/rx chain pair
    # per packet: common phase and timing slope, as one receiver puts on all its antennas
    phase = rng.uniform(-np.pi, np.pi, (T, 1, 1))
    slope = rng.normal(0, 2e-8, (T, 1, 1)) * SUB_HZ
    noise = rng.normal(size=h.shape) + 1j * rng.normal(size=h.shape)
    h = h * chains + noise * 10 ** (-snr_db / 20) / np.sqrt(2)
    turn = np.repeat(rng.normal(0, turn_rad, (T, 3)) * np.arange(3), 3, axis=1)  # (T, L)
    h = (h * np.exp(1j * (phase + slope + turn[..., None]))).astype(np.complex64)
    split = window_dynamic(h, np.ones(T, bool), n_tx=3)
    view = RouterView(split.dynamic, split.static, ltx, lrx, CARRIER_HZ, SUB_HZ)
    view.link_phase = theta.astype(np.float32)
    return view, walk[-1]


def test_calibration_recovers_chain_phases_of_a_clean_static_channel(
    rng: np.random.Generator,
) -> None:
    ltx, lrx = links(array_3([0.1, 1.2, 1.5], [0, 1, 0]), array_3([4.9, 2.6, 1.2], [0, 1, 0]))
    f = CARRIER_HZ + SUB_HZ.astype(np.float64)
    direct = np.linalg.norm(lrx - ltx, axis=-1)
    theta = rng.uniform(-np.pi, np.pi, 9)
    tilt = 3e-8  # a timing offset left in the window's frame (s)
    static = np.exp(1j * theta[:, None] - 2j * np.pi * direct[:, None] * f / SPEED_OF_LIGHT_MPS
                    - 2j * np.pi * tilt * SUB_HZ)
    view = RouterView(np.zeros((9, T, 32), np.complex64), static.astype(np.complex64), ltx, lrx,
                      CARRIER_HZ, SUB_HZ)
    cal = calibrate_from_static(view)
    relative = np.angle(np.exp(1j * ((cal.link_phase - cal.link_phase[0]) - (theta - theta[0]))))
    assert np.abs(relative).max() < 1e-3
    assert cal.slope == pytest.approx(-2 * np.pi * tilt, rel=1e-3)
    assert image_path_lengths_m(view, ROOM).shape == (9, 7)  # direct + six surfaces


@pytest.mark.parametrize("refine", [False, True], ids=["static", "refined"])
def test_a_walker_is_found_through_unknown_chain_phases(
    rng: np.random.Generator, refine: bool
) -> None:
    errors = []
    for start in ([1.2, 2.8, 1.0], [3.5, 1.2, 1.0], [2.0, 1.5, 1.0], [4.0, 3.2, 1.0]):
        views, end = [], None
        for tx, rx in ((array_3([0.1, 1.2, 1.5], [0, 1, 0]), array_3([4.9, 2.6, 1.2], [0, 1, 0])),
                       (array_3([1.5, 0.1, 1.6], [1, 0, 0]), array_3([3.3, 3.9, 1.1], [1, 0, 0]))):
            view, end = router_window(rng, tx, rx, start, [0.8, -0.4, 0.0])
            view.link_phase = None  # unknown: estimated from the static part
            views.append(view)
        assert end is not None
        result = FloorLocaliser(refine=refine).locate(views, ROOM)
        middle = np.asarray(start[:2]) + 0.32 * np.asarray([0.8, -0.4])  # mid-window
        errors.append(np.linalg.norm(result.peaks[0].xy_m - middle))
        assert result.fused.shape == (len(floor_grid(ROOM).cells_m),)
    assert np.median(errors) < 0.3


def test_an_empty_room_has_no_peak_that_stands_out(rng: np.random.Generator) -> None:
    tx, rx = array_3([0.1, 1.2, 1.5], [0, 1, 0]), array_3([4.9, 2.6, 1.2], [0, 1, 0])
    busy, _ = router_window(rng, tx, rx, [2.0, 3.0, 1.0], [0.8, 0.0, 0.0])
    empty, _ = router_window(rng, tx, rx, [200.0, 300.0, 1.0], [0.0, 0.0, 0.0], echo_db=-120)
    loc = FloorLocaliser()
    assert loc.locate([busy], ROOM).peaks[0].contrast > 2 * loc.locate([empty], ROOM).peaks[
        0].contrast


def test_heatmap_is_finite_for_a_single_link(rng: np.random.Generator) -> None:
    view = RouterView(
        (0.01 * rng.normal(size=(1, T, 32, 2))).astype(np.float32).view(np.complex64)[..., 0],
        np.ones((1, 32), np.complex64), np.array([[0.2, 0.2, 1.0]], np.float32),
        np.array([[4.8, 3.8, 1.0]], np.float32), 2.437e9, SUB_HZ,
    )
    grid = floor_grid(ROOM, cell_m=0.25)
    power = heatmap(view, grid.cells_m, Calibration(np.zeros(1, np.float32), 0.0))
    assert power.shape == (len(grid.cells_m),) and np.all(np.isfinite(power))
    assert np.all(power >= 0)


def test_temporal_components_match_the_svd_of_the_window(rng: np.random.Generator) -> None:
    """The Gram-matrix components carry the SVD's powers and project every steering
    vector with the SVD's power (each component's phase is free)."""
    from invispose.localise.backprojection import temporal_components

    n_l, n_t, n_s = 9, 48, 32
    # a rank-2 mover plus noise
    base = rng.standard_normal((2, n_l * n_s)) + 1j * rng.standard_normal((2, n_l * n_s))
    weights = rng.standard_normal((n_t, 2)) + 1j * rng.standard_normal((n_t, 2))
    m = weights @ base + 0.05 * (rng.standard_normal((n_t, n_l * n_s))
                                 + 1j * rng.standard_normal((n_t, n_l * n_s)))
    dynamic = np.swapaxes(m.reshape(n_t, n_l, n_s), 0, 1).astype(np.complex64)  # (L, T, S)
    rows = temporal_components(dynamic, k=4)  # (4, L, S)
    _, sv, vh = np.linalg.svd(m, full_matrices=False)
    expected = sv[:4, None] * vh[:4]  # (4, L·S)
    np.testing.assert_allclose(
        np.sum(np.abs(rows.reshape(4, -1)) ** 2, axis=1), sv[:4] ** 2, rtol=1e-4
    )
    probe = rng.standard_normal(n_l * n_s) + 1j * rng.standard_normal(n_l * n_s)
    np.testing.assert_allclose(
        np.abs(rows.reshape(4, -1) @ probe) ** 2, np.abs(expected @ probe) ** 2, rtol=1e-3
    )


def test_transmit_streams_and_what_the_fit_removes() -> None:
    tx = np.repeat(np.array([[0.0, 1.0, 1.5], [0.0, 1.03, 1.5]], np.float32), 3, axis=0)
    assert transmit_streams(tx) == 2
    assert transmit_streams(tx[:1]) == 1
    assert transmit_streams(tx[[0, 3, 1, 4]]) == 1  # not tx-major: one stream, safely
    rng = np.random.default_rng(3)
    static = (rng.normal(size=(6, 30)) + 1j * rng.normal(size=(6, 30))).astype(np.complex64)
    basis = removed_basis(static, np.linspace(-8e6, 8e6, 30).astype(np.float32), 2)
    assert basis.shape == (3, 6, 30)  # a factor per stream and one shared slope
    gram = np.einsum("als,bls->ab", basis.conj(), basis)
    np.testing.assert_allclose(gram, np.eye(3), atol=1e-5)
    # each stream's static pattern lies in it
    for a in range(2):
        own = np.zeros_like(static)
        own[3 * a : 3 * a + 3] = static[3 * a : 3 * a + 3]
        left = own - np.einsum("bls,b->ls", basis,
                               np.einsum("bls,ls->b", basis.conj(), own))
        assert np.linalg.norm(left) < 1e-4 * np.linalg.norm(own)


def test_measured_chain_phases_find_a_still_echo_in_a_window_of_its_own_timing_frame(
    rng: np.random.Generator,
) -> None:
    """Measured phases hold; each window's timing slope (where detection locked) and each
    stream's per-packet turn (residual CFO, stronger than the echo) are the window's own."""
    errors = []
    for start in ([1.2, 2.8, 1.0], [3.5, 1.2, 1.0], [2.0, 1.5, 1.0], [4.0, 3.2, 1.0]):
        views = []
        for tx, rx in ((array_3([0.1, 1.2, 1.5], [0, 1, 0]), array_3([4.9, 2.6, 1.2], [0, 1, 0])),
                       (array_3([1.5, 0.1, 1.6], [1, 0, 0]), array_3([3.3, 3.9, 1.1], [1, 0, 0]))):
            # a slow sway (4 cm/s) 30 dB under the static channel, turns of 0.06 rad
            view, _ = router_window(rng, tx, rx, start, [0.04, 0.02, 0.0], echo_db=-30.0,
                                    snr_db=40.0, turn_rad=0.06)
            views.append(view)
        result = FloorLocaliser().locate(views, ROOM)
        errors.append(np.linalg.norm(result.peaks[0].xy_m - np.asarray(start[:2])))
    assert np.median(errors) < 0.3
