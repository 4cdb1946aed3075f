"""Channel physics: delays and phase slopes, Doppler, static empty rooms, approximations."""

from __future__ import annotations

import numpy as np
import pytest

from invispose.csi.window import window_arrays
from invispose.sim.channel import BodyPaths, body_channel, body_paths, path_sum, static_paths
from invispose.sim.hardware import SPEED_OF_LIGHT_MPS, SUBCARRIER_SPACING_HZ, get_profile
from invispose.sim.room import N_SPECULAR, Room, image_sources
from invispose.sim.scene import RouterSpec, Scene
from invispose.sim.scripts import PersonScript

CARRIER_HZ = 5.2e9
LAMBDA_M = SPEED_OF_LIGHT_MPS / CARRIER_HZ
OFFSETS_HZ = np.arange(-28, 29) * SUBCARRIER_SPACING_HZ


def _slope(h: np.ndarray) -> float:
    """Unwrapped phase slope over subcarrier offsets, radians per Hz."""
    phase = np.unwrap(np.angle(h))
    return float(np.polyfit(OFFSETS_HZ, phase, 1)[0])


def test_longer_path_has_larger_delay_and_steeper_phase_slope() -> None:
    slopes = []
    for distance_m in (2.0, 5.0, 9.0):
        delay_s = distance_m / SPEED_OF_LIGHT_MPS
        h = path_sum([1.0], [delay_s], CARRIER_HZ + OFFSETS_HZ)
        slopes.append(_slope(h))
        # the slope is -2π τ: the delay can be read back from it
        assert -slopes[-1] / (2 * np.pi) == pytest.approx(delay_s, rel=1e-4)
        # the delay profile of the band peaks at the path's delay
        grid_s = np.linspace(0.0, 40e-9, 4001)
        profile = np.abs(np.exp(2j * np.pi * grid_s[:, None] * (CARRIER_HZ + OFFSETS_HZ)) @ h)
        assert grid_s[np.argmax(profile)] == pytest.approx(delay_s, abs=0.2e-9)
    assert slopes[0] > slopes[1] > slopes[2]


def test_image_sources_mirror_across_each_surface() -> None:
    images = image_sources([1.0, 2.0, 1.5], [4.0, 5.0, 3.0])
    assert images.shape == (N_SPECULAR, 3)
    assert np.allclose(images[0], [1.0, 2.0, 1.5])  # line of sight first
    first = images[1:7]
    expected = [[-1.0, 2.0, 1.5], [7.0, 2.0, 1.5], [1.0, -2.0, 1.5], [1.0, 8.0, 1.5],
                [1.0, 2.0, -1.5], [1.0, 2.0, 4.5]]
    assert sorted(map(tuple, first.round(6))) == sorted(map(tuple, np.asarray(expected)))
    # every second-order image is two mirrorings away: distinct and farther out
    assert len({tuple(p) for p in images.round(6)}) == N_SPECULAR


def test_wall_reflections_arrive_after_the_line_of_sight() -> None:
    rng = np.random.default_rng(0)
    room = Room.random(rng, [5.0, 4.0, 2.7])
    tx = np.asarray([[[0.5, 2.0, 1.2]]])
    rx = np.asarray([[[4.5, 2.0, 1.2]]])
    amp, delay = static_paths(tx, rx, room.size_m[None], room.gamma[None], room.furniture_m[None],
                              room.furniture_rcs_m2[None], room.furniture_phase[None], LAMBDA_M)
    assert delay[0, 0, 0] == pytest.approx(4.0 / SPEED_OF_LIGHT_MPS)
    assert np.all(delay[0, 0, 1:] > delay[0, 0, 0])
    assert np.abs(amp[0, 0, 0]) > np.abs(amp[0, 0, 1:]).max()


def _moving_point(times_s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 10 cm sphere moving along +x at 1 m/s: centres, axes (3, 1, T, 1), scalars (1, T, 1)."""
    n_t = len(times_s)
    centre = np.zeros((3, 1, n_t, 1), dtype=np.float32)
    centre[0, 0, :, 0] = 2.0 + 1.0 * times_s
    centre[1, 0, :, 0] = 0.8
    centre[2, 0, :, 0] = 1.0
    axis = np.zeros_like(centre)
    axis[2] = 1.0
    size = np.full((1, n_t, 1), 0.1, dtype=np.float32)
    return centre, axis, size


def test_moving_scatterer_modulates_amplitude_at_the_doppler_rate() -> None:
    rate_hz, n_t = 400.0, 800
    times = np.arange(n_t) / rate_hz
    tx = np.asarray([[[0.0, 0.0, 1.0]]], dtype=np.float32)  # (1, A, 3)
    rx = np.asarray([[[0.0, 0.2, 1.0]]], dtype=np.float32)
    centre, axis, size = _moving_point(times)
    paths = body_paths(tx, rx, centre, axis, size, size, LAMBDA_M)
    h_body = body_channel(paths, LAMBDA_M, [0.0], chunk=1)[0, 0, :, 0]  # (T,)
    h_los = path_sum([LAMBDA_M / (4 * np.pi * 0.2)], [0.2 / SPEED_OF_LIGHT_MPS], [CARRIER_HZ])
    amplitude = np.abs(h_los[0] + h_body)
    # geometry: the bistatic path length grows at d(e1 + e2)/dt; Doppler = that / λ
    length = (paths.tx_len_m + paths.rx_len_m)[0, 0, :, 0]
    predicted_hz = float(np.mean(np.diff(length)) * rate_hz / LAMBDA_M)
    spectrum = np.abs(np.fft.rfft((amplitude - amplitude.mean()) * np.hanning(n_t)))
    freqs = np.fft.rfftfreq(n_t, 1.0 / rate_hz)
    assert predicted_hz == pytest.approx(2.0 / LAMBDA_M, rel=0.05)  # ~2 v / λ, near-monostatic
    assert freqs[np.argmax(spectrum)] == pytest.approx(predicted_hz, abs=2 * rate_hz / n_t)


def test_chunked_offset_phase_stays_close_to_the_exact_sum() -> None:
    rng = np.random.default_rng(3)
    n_t, n_q = 64, 20
    times = np.arange(n_t) / 100.0
    centre = rng.uniform(1.0, 4.0, (3, 1, 1, n_q)).astype(np.float32)
    velocity = rng.normal(0.0, 1.5, (3, 1, 1, n_q)).astype(np.float32)  # fast limbs
    centre = centre + velocity * times[None, None, :, None].astype(np.float32)
    axis = rng.normal(size=(3, 1, n_t, n_q)).astype(np.float32)
    axis /= np.linalg.norm(axis, axis=0)
    size = np.full((1, n_t, n_q), 0.05, dtype=np.float32)
    tx = np.asarray([[[0.0, 0.0, 1.0], [0.03, 0.0, 1.0]]], dtype=np.float32)
    rx = np.asarray([[[5.0, 4.0, 1.2]]], dtype=np.float32)
    paths = body_paths(tx, rx, centre, axis, size, size, LAMBDA_M)
    offsets = np.linspace(-40e6, 40e6, 32)  # an 80 MHz band: the hardest case
    exact = body_channel(paths, LAMBDA_M, offsets, chunk=1)
    fast = body_channel(paths, LAMBDA_M, offsets, chunk=16)
    error = np.abs(fast - exact) / np.abs(exact).mean()
    assert np.median(error) < 0.05
    assert isinstance(paths, BodyPaths) and exact.shape == (1, 2, n_t, 32)


def _window(scene: Scene, t0_s: float) -> np.ndarray:
    """Window amplitude (L, T, 32), each packet over its mean: AGC steps removed."""
    frames = scene.frames("r", t0_s, t0_s + 1.0)
    csi = np.stack([f.csi for f in frames])[:, None]  # (T, 1, n_tx, n_rx, n_sub)
    amplitude, _, _ = window_arrays(csi[:, 0], frames[0].subcarriers, frames[0].bandwidth_mhz)
    out: np.ndarray = amplitude / amplitude.mean(axis=(0, 2), keepdims=True)
    return out


def test_empty_room_is_static_but_for_noise_and_impairments() -> None:
    router = RouterSpec("r", "intel5300", ((0.3, 0.2, 1.4),), ((4.6, 3.8, 1.2), (4.57, 3.8, 1.2)))
    empty = Scene.simple([5.0, 4.0, 2.7], [router], 0, seed=5, epoch_s=0.0)
    h = empty.channel("r", np.linspace(0.0, 3.0, 50))
    assert np.array_equal(h, np.broadcast_to(h[:, :, :1], h.shape))  # the channel never moves
    frames = empty.frames("r", 0.0, 0.5)
    raw = np.stack([f.csi for f in frames])
    assert not np.allclose(raw[0], raw[1])  # but each report differs: noise, phase, timing
    walker = PersonScript("w", 1.75, np.asarray([5.0, 4.0, 2.7]))
    walker.start([3.6, 2.4], 0.0)
    walker.add("walk", to_m=[4.4, 3.2], speed_mps=1.2)  # past the receiver
    busy = Scene(empty.room, [router], [walker], seed=5, epoch_s=0.0)
    quiet = _window(empty, 0.0).std(axis=1).mean()
    moving = _window(busy, 0.0).std(axis=1).mean()
    assert moving > 1.5 * quiet
    assert quiet < 0.15  # only noise and quantisation left after normalisation


def test_profiles_match_their_readers_layouts() -> None:
    assert len(get_profile("intel5300").frame_subcarriers) == 30
    assert len(get_profile("esp32").frame_subcarriers) == 64
    assert len(get_profile("nexmon").frame_subcarriers) == 256
    assert len(get_profile("atheros").frame_subcarriers) == 114
    assert get_profile("nexmon43455c0") is get_profile("nexmon")
