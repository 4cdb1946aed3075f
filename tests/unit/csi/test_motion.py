"""Model-free motion detection on synthetic CSI amplitude."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from invispose.csi.motion import MotionDetector, motion_scores

RATE_HZ = 100.0
L, S = 4, 16


def synthetic(
    rng: np.random.Generator,
    duration_s: float,
    *,
    motion: list[tuple[float, float]] = (),  # type: ignore[assignment]
    noise: float = 0.01,
    gain: np.ndarray | None = None,
    t0: float = 0.0,
    profile: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Times (N,) and amplitude (N, L, S): static profile, noise, optional body motion."""
    t = t0 + np.arange(int(duration_s * RATE_HZ)) / RATE_HZ  # (N,)
    base = rng.uniform(0.5, 2.0, size=(L, S)) if profile is None else profile  # (L, S)
    amp = base * (1.0 + noise * rng.normal(size=(t.size, L, S)))  # (N, L, S)
    phases = rng.uniform(0, 2 * np.pi, size=(L, S))
    for start, end in motion:
        on = ((t >= start) & (t < end))[:, None, None]
        swing = 0.2 * np.sin(2 * np.pi * 1.3 * t[:, None, None] + phases)
        amp = np.where(on, amp * (1.0 + swing), amp)
    if gain is not None:
        amp = amp * gain[:, None, None]
    return t, amp


def test_static_is_low_and_motion_is_high(rng: np.random.Generator) -> None:
    t, amp = synthetic(rng, 60.0, motion=[(30.0, 40.0)])
    score, present = motion_scores(t, amp, rate_hz=RATE_HZ)
    quiet = (t > 10.0) & (t < 29.0) | (t > 42.0)
    moving = (t > 31.0) & (t < 40.0)
    assert score[quiet].max() < 2.0
    assert not present[quiet].any()
    assert score[moving].min() > 20.0
    assert present[moving].all()
    assert not present[t < 10.0].any()  # calibrating


def test_agc_step_alone_does_not_trigger(rng: np.random.Generator) -> None:
    n = int(40 * RATE_HZ)
    gain = np.where(np.arange(n) < n // 2, 1.0, 6.0)  # +15.6 dB step at 20 s
    gain *= np.where(np.arange(n) % 7 == 0, 0.5, 1.0)  # and per-packet AGC jitter
    t, amp = synthetic(rng, 40.0, gain=gain)
    score, present = motion_scores(t, amp, rate_hz=RATE_HZ)
    assert score[t > 10.0].max() < 2.0
    assert not present.any()


def test_baseline_adapts_to_a_changed_static_level(rng: np.random.Generator) -> None:
    t1, a1 = synthetic(rng, 20.0, noise=0.01)
    t2, a2 = synthetic(rng, 160.0, noise=0.02, t0=20.0)  # new profile, 4x the noise variance
    t, amp = np.concatenate([t1, t2]), np.concatenate([a1, a2])
    score, present = motion_scores(t, amp, rate_hz=RATE_HZ)
    assert score[(t > 22.0) & (t < 25.0)].min() > 3.0  # noisier than the learned room
    assert score[t > 150.0].max() < 2.0  # ... until the baseline has risen to it
    assert not present[t > 150.0].any()
    # ongoing motion is not learned as quickly: still detected after a minute of it
    t3, a3 = synthetic(rng, 90.0, motion=[(20.0, 90.0)])
    score3, present3 = motion_scores(t3, a3, rate_hz=RATE_HZ)
    assert present3[t3 > 85.0].all()


def test_motion_during_calibration_is_unlearned_when_the_room_empties(
    rng: np.random.Generator,
) -> None:
    t, amp = synthetic(rng, 40.0, motion=[(0.0, 8.0), (30.0, 40.0)])
    score, present = motion_scores(t, amp, rate_hz=RATE_HZ)
    assert not present[t < 10.0].any()
    assert present[(t > 31.0) & (t < 40.0)].all()
    assert score[(t > 12.0) & (t < 29.0)].max() < 2.0


def test_streaming_detector_matches_the_vectorised_scores(rng: np.random.Generator) -> None:
    t, amp = synthetic(rng, 30.0, motion=[(15.0, 20.0)])
    keep = rng.uniform(size=t.size) > 0.2  # drops
    keep[(t > 24.0) & (t < 25.5)] = False  # a gap longer than the window
    t = t[keep] + rng.uniform(-0.002, 0.002, size=keep.sum())
    amp = amp[keep]
    params = dict(rate_hz=RATE_HZ, window_s=0.5, calibration_s=5.0, baseline_rise_s=20.0)
    detector = MotionDetector(**params)  # type: ignore[arg-type]
    streamed = np.array([detector.update(a, float(ti)) for a, ti in zip(amp, t, strict=True)])
    score, present = motion_scores(t, amp, **params)  # type: ignore[arg-type]
    np.testing.assert_allclose(streamed, score, rtol=1e-6, atol=1e-9)
    assert detector.present == present[-1]
    assert detector.baseline is not None and detector.baseline > 0
    assert present.any() and not present.all()
    # the same capture shuffled scores the same per packet
    perm = rng.permutation(t.size)
    shuffled, shuffled_present = motion_scores(t[perm], amp[perm], **params)  # type: ignore[arg-type]
    np.testing.assert_allclose(shuffled, score[perm], rtol=1e-9)
    np.testing.assert_array_equal(shuffled_present, present[perm])


def test_detector_present_has_hysteresis(rng: np.random.Generator) -> None:
    t, amp = synthetic(rng, 25.0, motion=[(15.0, 25.0)])
    detector = MotionDetector(rate_hz=RATE_HZ, threshold=4.0, release=0.5)
    states = []
    for a, ti in zip(amp, t, strict=True):
        detector.update(a, float(ti))
        states.append(detector.present)
    flips = np.count_nonzero(np.diff(np.asarray(states, dtype=int)))
    assert states[-1] and flips == 1


def test_bad_packets_are_ignored_and_shape_changes_restart_the_window(
    rng: np.random.Generator,
) -> None:
    detector = MotionDetector(rate_hz=RATE_HZ, calibration_s=2.0)
    t, amp = synthetic(rng, 5.0)
    for a, ti in zip(amp, t, strict=True):
        detector.update(a, float(ti))
    before = detector.score
    assert detector.update(amp[0], 1.0) == before  # earlier than the previous packet
    assert detector.update(np.full((L, S), np.nan), 6.0) == before
    assert detector.packets_ignored == 2
    assert detector.update(np.ones((2, S)), 6.0) == 0.0  # new link count: window restarts
    assert detector.baseline is not None


def test_empty_and_bad_inputs() -> None:
    score, present = motion_scores(np.zeros(0), np.zeros((0, L, S)))
    assert score.shape == present.shape == (0,)
    with pytest.raises(ValueError, match="amplitude"):
        motion_scores(np.zeros(3), np.zeros((4, L, S)))
    with pytest.raises(ValueError):
        MotionDetector(rate_hz=0.0)


def test_motion_report_plots_real_captures(shared_data: Path, tmp_path: Path) -> None:
    from invispose.csi.motion_report import plot_motion

    paths = [
        shared_data / "esp32" / "example_100hz_pitraffic.csv",
        shared_data / "intel5300" / "example.dat",
        shared_data / "nexmon" / "example_4358.pcap",
        tmp_path / "missing.dat",
    ]
    out = tmp_path / "motion.png"
    summary = plot_motion(paths, out, chipsets={"example_4358.pcap": "bcm4358"})
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    esp = summary["example_100hz_pitraffic.csv"]
    assert esp["frames"] == 833 and esp["bad_records"] == 1
    assert esp["frames_scored"] > 700 and esp["score_median"] is not None
    assert summary["example.dat"]["links"] == "2x3"
    assert summary["example_4358.pcap"]["frames_scored"] == 0  # one frame: nothing to score
    assert "error" in summary["missing.dat"]
