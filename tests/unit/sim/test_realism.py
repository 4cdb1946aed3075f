"""Simulator realism: chain skews, SFO/CFO, SNR over distance, torso speckle, RCS, breathing."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from invispose.sim.body import N_TORSO, TORSO_PART, body_parts, keypoints_major
from invispose.sim.channel import _FOUR_PI_15, body_channel, body_paths
from invispose.sim.hardware import (
    SUBCARRIER_SPACING_HZ,
    get_profile,
    link_snr_db,
)
from invispose.sim.impairments import HT_LTF_S, DeviceState, chain_response, impair
from invispose.sim.motion import LIE, SIT, STAND, pose_at, random_motion
from invispose.sim.scene import RouterSpec, Scene

LAMBDA_M = 0.0578


def _line(phase: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Least-squares slope of unwrapped phase (..., S) against x (S,)."""
    ph = np.unwrap(phase, axis=-1)
    xc = x - x.mean()
    out: np.ndarray = (ph @ xc) / (xc @ xc)
    return out


def test_chain_response_is_phase_and_skew_per_antenna_pair() -> None:
    profile = get_profile("intel5300")
    device = DeviceState.random(np.random.default_rng(0), profile, 4)
    assert device.tx_skew_s is not None and device.rx_skew_s is not None
    assert 0.5e-9 < np.abs(device.rx_skew_s).mean() < 10e-9  # a few ns on the Intel 5300
    offsets = profile.frame_subcarriers.astype(np.float64) * SUBCARRIER_SPACING_HZ
    r = chain_response(device, offsets)  # (n, A, R, S)
    assert r.shape == (4, 3, 3, 30) and r.dtype == np.complex64
    slope = _line(np.angle(r), offsets)  # (n, A, R) rad per Hz
    skew = device.tx_skew_s[:, :, None] + device.rx_skew_s[:, None, :]
    assert np.allclose(slope, -2 * np.pi * skew, atol=2e-12)
    # built by hand from the first four fields: skews are zero, only the static phases
    bare = DeviceState(device.ripple, device.chain_phase, device.timing_offset_s,
                       device.agc_offset_db)
    assert np.allclose(chain_response(bare, offsets), np.exp(1j * device.chain_phase)[..., None])
    esp = DeviceState.random(np.random.default_rng(0), get_profile("esp32"), 3)
    assert esp.rx_skew_s is not None and np.all(esp.rx_skew_s == 0)  # one chain: no skew


def test_take_keeps_rows_and_the_first_transmit_chains() -> None:
    device = DeviceState.random(np.random.default_rng(1), get_profile("intel5300"), 5)
    rows = np.asarray([3, 1])
    sub = device.take(rows, 2)
    assert sub.chain_phase.shape == (2, 2, 3) and sub.tx_skew_s is not None
    assert sub.tx_skew_s.shape == (2, 2) and sub.ripple.shape == (2, device.ripple.shape[1])
    offsets = np.arange(-28, 29) * SUBCARRIER_SPACING_HZ
    assert np.array_equal(chain_response(sub, offsets), chain_response(device, offsets)[rows, :2])
    for name in ("timing_offset_s", "agc_offset_db", "rx_skew_s", "sfo_ppm", "sfo_phase_s"):
        assert np.array_equal(getattr(sub, name), getattr(device, name)[rows]), name


def _clean_report(profile_name: str, n_t: int, **changes: float) -> tuple:
    """Reports of a flat channel without noise or quantisation, and the device."""
    profile = replace(get_profile(profile_name), timing_jitter_ns=0.0, **changes)
    rng = np.random.default_rng(7)
    sub = profile.frame_subcarriers
    device = DeviceState.random(rng, profile, 1, sub)
    channel = np.ones((1, n_t, profile.n_tx, profile.n_rx, len(sub)), dtype=np.complex64)
    times = np.arange(n_t) * 0.01
    report, _ = impair(rng, channel, profile, device, sub, [300.0], quantise=False,
                       packet_times_s=times)
    return report.csi[0], device, profile, times  # (T, A, R, S)


def test_impair_applies_each_pairs_skew() -> None:
    csi, device, profile, _ = _clean_report("intel5300", 4)
    offsets = profile.frame_subcarriers.astype(np.float64) * SUBCARRIER_SPACING_HZ
    # against pair (0, 0): the common phase, timing and ripple cancel, the chains remain
    ratio = csi / csi[:, :1, :1]  # (T, A, R, S)
    slope = _line(np.angle(ratio), offsets)  # (T, A, R)
    skew = device.tx_skew_s[0][:, None] + device.rx_skew_s[0][None, :]
    expected = -2 * np.pi * (skew - skew[0, 0])
    assert np.allclose(slope[:, 1:, :], expected[None, 1:, :], atol=2e-11)  # tx differ: + CFO
    assert np.allclose(slope[:, 0], expected[None, 0], atol=2e-12)


def test_sfo_makes_the_timing_slope_drift_across_packets() -> None:
    csi, device, profile, times = _clean_report("intel5300", 200, chain_skew_ns=0.0,
                                                cfo_residual_hz=0.0)
    offsets = profile.frame_subcarriers.astype(np.float64) * SUBCARRIER_SPACING_HZ
    slope = _line(np.angle(csi[:, 0, 0]), offsets)  # (T,) rad per Hz: the timing
    timing = -slope / (2 * np.pi)  # (T,) device offset (and ripple's tilt) plus the drift
    assert 10e-9 < np.ptp(timing) <= 50.1e-9  # within one 50 ns sample of a 20 MHz band
    steps = np.diff(timing)
    regular = np.abs(steps) < 20e-9  # between re-alignments the drift is linear
    drift = device.sfo_ppm[0] * 1e-6 * 0.01
    assert np.allclose(steps[regular], drift, atol=1e-11) and regular.mean() > 0.5
    for r in range(profile.n_rx):  # common to the receiver's antennas
        assert np.allclose(_line(np.angle(csi[:, 0, r]), offsets), slope, atol=1e-12)
    still, *_ = _clean_report("intel5300", 200, chain_skew_ns=0.0, cfo_residual_hz=0.0,
                              sfo_ppm=0.0)
    assert np.ptp(_line(np.angle(still[:, 0, 0]), offsets)) < 1e-12


def test_residual_cfo_turns_each_transmit_stream_per_packet() -> None:
    csi, *_ = _clean_report("intel5300", 400, chain_skew_ns=0.0, sfo_ppm=0.0)
    turn = np.angle(csi[:, 1] * np.conj(csi[:, 0])).mean(axis=-1)  # (T, R) tx 1 against tx 0
    turn -= turn.mean(axis=0)  # the static chain phases
    assert np.allclose(turn, turn[:, :1], atol=1e-5)  # the same for every receive antenna
    expected = 2 * np.pi * HT_LTF_S * get_profile("intel5300").cfo_residual_hz
    assert np.std(turn[:, 0]) == pytest.approx(expected, rel=0.15)


def test_snr_falls_with_link_length() -> None:
    profile = get_profile("esp32")
    rng = np.random.default_rng(2)
    means = [link_snr_db(rng, profile, np.full(2000, d)).mean() for d in (1.5, 4.0, 12.0)]
    assert means[0] > means[1] > means[2]
    assert means[1] == pytest.approx(np.mean(profile.snr_db), abs=0.5)  # the reference
    assert 9.0 < means[1] - means[2] < 15.0  # 20-30 log10(3)
    again = link_snr_db(np.random.default_rng(2), profile, np.full(2000, 1.5))
    assert again.mean() == means[0]


def test_scene_routers_far_apart_report_lower_snr() -> None:
    near = RouterSpec("n", "esp32", ((2.0, 2.0, 1.0),), ((3.0, 2.0, 1.0),))
    far = RouterSpec("f", "esp32", ((0.2, 0.2, 1.0),), ((9.8, 7.8, 2.0),))
    snr = {"n": [], "f": []}
    for seed in range(12):
        scene = Scene.simple([10.0, 8.0, 2.7], [near, far], 0, seed=seed, epoch_s=0.0)
        for rid in snr:
            frame = scene.frames(rid, 0.0, 0.5)[0]
            snr[rid].append(frame.rssi_dbm - frame.noise_dbm)
    assert np.mean(snr["n"]) > np.mean(snr["f"]) + 10.0


def _standing(heading: np.ndarray) -> tuple[np.ndarray, ...]:
    """Body parts of one standing 1.70 m adult at headings (T,): coordinate-major (3, 1, T, B)."""
    motion = random_motion(np.random.default_rng(5), [STAND])
    motion.height_m[:] = 1.70
    motion.start_xy[:] = (3.0, 3.0)
    pose = pose_at(motion, np.zeros((1, heading.size)))
    pose.heading = heading.astype(np.float32)[None]
    pose.breath_m = np.zeros_like(pose.heading)
    kp = keypoints_major(pose, motion.height_m[:, None])  # (17, 3, 1, T)
    centre, unit, radius, half, _ = body_parts(kp, motion.height_m[:, None])
    return (np.ascontiguousarray(centre.transpose(1, 2, 3, 0)),  # (3, 1, T, B)
            np.ascontiguousarray(unit.transpose(1, 2, 3, 0)),
            np.ascontiguousarray(radius.transpose(1, 2, 0)),  # (1, T, B)
            np.ascontiguousarray(half.transpose(1, 2, 0)))


def test_whole_body_rcs_of_a_standing_adult_is_in_the_published_range() -> None:
    heading = np.linspace(0.0, 2 * np.pi, 72, endpoint=False)
    centre, unit, radius, half = _standing(heading)
    distance_m = 50.0  # monostatic, far away, horizontal: how RCS is measured
    antenna = np.asarray([[[3.0 + distance_m, 3.0, 1.0]]], dtype=np.float32)
    paths = body_paths(antenna, antenna, centre, unit, radius, half, LAMBDA_M)
    rcs = (paths.amp[0] * distance_m**2 * _FOUR_PI_15 / LAMBDA_M) ** 2  # (T, B) with |Γ|²
    total = rcs.sum(axis=-1).mean()  # incoherent sum, averaged over aspect
    assert 0.3 < total < 1.0


def test_the_torso_returns_speckle_as_the_body_turns() -> None:
    heading = np.linspace(0.0, np.radians(30.0), 120)
    centre, unit, radius, half = _standing(heading)
    torso = slice(TORSO_PART, TORSO_PART + N_TORSO)
    assert N_TORSO >= 3
    spread = np.linalg.norm(centre[:, 0, 0, torso, None] - centre[:, 0, 0, None, torso], axis=0)
    assert spread.max() > 0.15  # points spread over the torso's surface
    tx = np.asarray([[[0.2, 0.2, 1.2]]], dtype=np.float32)
    rx = np.asarray([[[6.0, 0.5, 1.2]]], dtype=np.float32)
    paths = body_paths(tx, rx, centre[..., torso].copy(), unit[..., torso].copy(),
                       radius[..., torso].copy(), half[..., torso].copy(), LAMBDA_M)
    h = body_channel(paths, LAMBDA_M, [0.0], chunk=1)[0, 0, :, 0]  # (T,) the torso's return
    power = (paths.amp[0] ** 2).sum(axis=-1)  # (T,) incoherent: what one point would give
    fade_db = 20 * np.log10(np.abs(h).max() / np.abs(h).min())
    assert fade_db > 6.0  # relative phases of the points change: deep fades
    assert 10 * np.log10(power.max() / power.min()) < 3.0  # while the mean RCS barely moves


def test_breathing_moves_the_chest_and_sitting_sways_less() -> None:
    rng = np.random.default_rng(8)
    kinds = np.repeat([STAND, SIT, LIE], 6)
    motion = random_motion(rng, kinds)
    t = np.arange(0.0, 40.0, 0.05, dtype=np.float32)  # (T,)
    pose = pose_at(motion, np.broadcast_to(t, (len(motion), t.size)))
    kp = keypoints_major(pose, motion.height_m[:, None])  # (17, 3, M, T)
    centre, *_ = body_parts(kp, motion.height_m[:, None])
    hip = 0.5 * (kp[11] + kp[12])  # (3, M, T)
    chest = centre[TORSO_PART] - hip  # (3, M, T) against the body (sway removed)
    p2p = np.linalg.norm(np.ptp(chest, axis=2), axis=0)  # (M,) along its one direction
    assert np.all(p2p > 0.0039) and np.all(p2p < 0.0101)  # 4-10 mm
    main = np.argmax(np.ptp(chest, axis=2), axis=0)  # (M,) coordinate it moves most along
    along = chest[main, np.arange(len(motion))]  # (M, T)
    spectrum = np.abs(np.fft.rfft(along - along.mean(axis=1, keepdims=True), axis=1))
    freqs = np.fft.rfftfreq(t.size, 0.05)
    peak = freqs[np.argmax(spectrum, axis=1)]
    assert np.all((peak > 0.17) & (peak < 0.36))  # 0.2-0.33 Hz breathing
    back = centre[TORSO_PART + 1] - hip
    assert np.all(np.linalg.norm(np.ptp(back, axis=2), axis=0) < 0.5 * p2p)  # back moves less
    sway = np.ptp(pose.root_xy, axis=1).max(axis=-1)  # (M,)
    assert sway[kinds == SIT].max() < 0.5 * sway[kinds == STAND].min()
    assert sway[kinds == LIE].max() < sway[kinds == SIT].min()
