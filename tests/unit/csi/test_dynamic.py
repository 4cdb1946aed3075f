"""The shared cleaning fit: what moves survives, what the receiver adds per packet goes."""

from __future__ import annotations

import numpy as np
import pytest

from invispose.csi.dynamic import DynamicWindow, window_dynamic
from invispose.csi.window import Windower, window_features
from invispose.schemas import CsiFrame

T, L, S = 48, 6, 32


def channel(
    rng: np.random.Generator, echo_db: float = -20.0, multipath: float = 1.0,
    echo_slope: float = 0.05,
) -> tuple[np.ndarray, np.ndarray]:
    """A static multipath channel and a moving echo per link: (T, L, S) complex each."""
    x = np.arange(S) - (S - 1) / 2
    static = np.zeros((L, S), complex)
    for _ in range(5):  # a few fixed paths with their own delays
        static += multipath * rng.normal() * np.exp(1j * (rng.uniform(-np.pi, np.pi, (L, 1))
                                              + rng.uniform(-0.2, 0.2) * x))
    static += 3.0  # a strong line of sight
    # the echo: a delay that grows over the window (Doppler) and a phase per link (angle)
    t = np.arange(T)[:, None, None]
    angle = rng.uniform(-np.pi, np.pi, (1, L, 1))
    echo = np.exp(1j * (0.35 * t + angle + echo_slope * x))  # (T, L, S)
    echo *= np.sqrt(np.mean(np.abs(static) ** 2)) * 10 ** (echo_db / 20)
    return np.broadcast_to(static, (T, L, S)), echo


def receiver(rng: np.random.Generator, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What the receiver adds per packet, alike on all links: phase, timing slope, gain (dB)."""
    x = np.arange(S) - (S - 1) / 2
    phase = rng.uniform(-np.pi, np.pi, (T, 1, 1))
    slope = rng.normal(0, 0.1, (T, 1, 1))
    gain_db = np.round(rng.normal(0, 2.0, T))  # AGC steps of 1 dB
    out = h * 10 ** (gain_db[:, None, None] / 20) * np.exp(1j * (phase + slope * x))
    return out.astype(np.complex64), gain_db.astype(np.float32)


def receiver_wide(rng: np.random.Generator, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``receiver`` for packets (P, L, n_sub) on any subcarrier count."""
    n_p, _, n_sub = h.shape
    x = np.arange(n_sub) - (n_sub - 1) / 2
    phase = rng.uniform(-np.pi, np.pi, (n_p, 1, 1))
    slope = rng.normal(0, 0.05, (n_p, 1, 1))
    gain_db = np.round(rng.normal(0, 2.0, n_p))
    out = h * 10 ** (gain_db[:, None, None] / 20) * np.exp(1j * (phase + slope * x))
    return out.astype(np.complex64), gain_db.astype(np.float32)


def energy_kept(dynamic: np.ndarray, echo: np.ndarray) -> float:
    """How much of the echo's variation (L, T, S vs T, L, S) the dynamic part holds.

    Up to one complex factor per subcarrier, common to all links and packets (the
    reference packet's fixed phase, slope and gain).
    """
    want = np.swapaxes(echo - echo.mean(axis=0), 0, 1)  # (L, T, S)
    fit = (np.sum(np.conj(want) * dynamic, axis=(0, 1))
           / np.sum(np.abs(want) ** 2, axis=(0, 1)))  # (S,)
    resid = dynamic - fit * want
    return float(1 - np.sum(np.abs(resid) ** 2) / np.sum(np.abs(fit * want) ** 2))


def test_the_receivers_per_packet_phase_timing_and_gain_go_away(rng: np.random.Generator) -> None:
    static, _ = channel(rng)
    csi, _ = receiver(rng, static)
    split = window_dynamic(csi, np.ones(T, bool))
    assert split.dynamic.shape == (L, T, S) and split.static.shape == (L, S)
    assert np.abs(split.dynamic).max() < 1e-3  # a still room: nothing moves
    assert np.sqrt(np.mean(np.abs(split.static) ** 2)) == pytest.approx(1.0, rel=1e-4)
    # the static pattern keeps each link's own phase relative to the others
    ratio = split.static / static[0]  # (L, S): the reference packet's factor per subcarrier
    assert np.allclose(ratio / ratio[:1], 1.0, atol=1e-3)


def test_a_moving_echo_survives_coherently_across_links(rng: np.random.Generator) -> None:
    static, echo = channel(rng)
    csi, _ = receiver(rng, static + echo)
    split = window_dynamic(csi, np.ones(T, bool))
    assert energy_kept(split.dynamic, echo) > 0.9
    # per-link fits (the old sanitizer's way) keep far less of it
    per_link = [window_dynamic(csi[:, i : i + 1], np.ones(T, bool)).dynamic for i in range(L)]
    alone = np.concatenate(per_link, axis=0)  # (L, T, S), each link cleaned on its own
    assert energy_kept(alone, echo) < energy_kept(split.dynamic, echo) - 0.2


def test_reported_gain_keeps_a_single_links_echo(rng: np.random.Generator) -> None:
    """On one link a fitted gain takes the echo's in-phase part; a reported gain keeps it."""
    # a short excess path across 20 MHz: the echo looks like the line of sight over the band
    static, echo = channel(rng, echo_db=-15.0, multipath=0.3, echo_slope=0.01)
    csi, gain_db = receiver(rng, (static + echo)[:, :1])  # one link, as on an ESP32
    fitted = window_dynamic(csi, np.ones(T, bool))
    reported = window_dynamic(csi, np.ones(T, bool), gain_db=gain_db)
    moving = np.sum(np.abs(echo[:, :1] - echo[:, :1].mean(axis=0)) ** 2)

    def kept(split: DynamicWindow) -> float:  # share of the echo's power left, after scaling
        return float(np.sum(np.abs(split.dynamic) ** 2) * split.scale**2 / moving)

    assert kept(fitted) < 0.15
    assert 0.3 < kept(reported) < 1.2


def test_missing_packets_are_zero_and_ignored(rng: np.random.Generator) -> None:
    static, echo = channel(rng)
    csi, _ = receiver(rng, static + echo)
    valid = rng.random(T) > 0.2
    valid[-1] = True
    csi[~valid] = 0
    split = window_dynamic(csi, valid)
    assert np.all(split.dynamic[:, ~valid] == 0)
    assert energy_kept(split.dynamic[:, valid], echo[valid]) > 0.85
    nothing = window_dynamic(np.zeros((T, L, S), np.complex64), np.zeros(T, bool))
    assert np.all(nothing.dynamic == 0) and np.all(np.isfinite(nothing.static))


def test_leading_dimensions_match_single_windows(rng: np.random.Generator) -> None:
    batch = np.stack([receiver(rng, sum(channel(rng)))[0] for _ in range(3)])  # (3, T, L, S)
    valid = np.ones((3, T), bool)
    valid[1, 5:9] = False
    batch[1, 5:9] = 0
    together = window_dynamic(batch, valid)
    for i in range(3):
        alone = window_dynamic(batch[i], valid[i])
        np.testing.assert_allclose(together.dynamic[i], alone.dynamic, atol=1e-5)
    with pytest.raises(ValueError):
        window_dynamic(batch, valid[:, :-1])


def test_the_windower_cuts_what_window_features_computes(rng: np.random.Generator) -> None:
    """Runtime windows from frames equal the batch transform of the same packets."""
    k = np.arange(-28, 29)
    static, echo = channel(rng)
    n_packets = 80
    x = np.repeat(np.arange(S), 2)[: k.size]  # crude canonical -> hardware bins
    clean = np.concatenate([static + echo, static[:32] + echo[:32]])[:n_packets]  # (P, L, S)
    wide, gains = receiver_wide(rng, clean[..., x])  # (P, L, n_sub), (P,)
    reported = [w.reshape(2, 3, k.size) for w in wide]
    gain_db = [np.asarray([g]) for g in gains]
    win = Windower(router_id="r", space_id="s", tx_pos_m=np.zeros((2, 3)),
                   rx_pos_m=np.ones((3, 3)), room_size_m=[5, 4, 2.7], window_samples=64)
    for i, (packet, gain) in enumerate(zip(reported, gain_db, strict=True)):
        win.push(CsiFrame(router_id="r", seq=i, device_time_s=i / 100.0, arrival_time_s=i / 100.0,
                          csi=packet, subcarriers=k.astype(np.int16), agc_db=float(gain[0])))
    window = win.make_window()
    assert window is not None
    last = np.stack(reported[-64:])  # (T, 2, 3, n_sub)
    gains = np.concatenate(gain_db[-64:])  # (T,)
    want = window_features(last, k, 20, gain_db=gains)
    np.testing.assert_allclose(window.dynamic, want.dynamic, atol=1e-5)
    np.testing.assert_allclose(window.static, want.static, atol=1e-5)
    np.testing.assert_allclose(window.amplitude, want.amplitude, atol=1e-5)
    np.testing.assert_array_equal(window.subcarrier_hz, want.subcarrier_hz)
    assert window.subcarrier_hz[0] == pytest.approx(-28 * 312_500.0)
    assert window.subcarrier_hz[-1] == pytest.approx(28 * 312_500.0)


def stream_turns(rng: np.random.Generator, csi: np.ndarray, n_tx: int, rad: float) -> np.ndarray:
    """A residual carrier offset's turn: a per-packet phase of each transmit stream (tx-major)."""
    turn = rng.normal(0.0, rad, (T, n_tx, 1)) * np.arange(n_tx)[None, :, None]  # (T, A, 1)
    per_link = np.repeat(np.exp(1j * turn), csi.shape[1] // n_tx, axis=1)  # (T, L, 1)
    return (csi * per_link).astype(np.complex64)


def test_each_transmit_streams_per_packet_turn_goes_away(rng: np.random.Generator) -> None:
    """Residual CFO turns each stream per packet: as strong as a still person's echo."""
    static, echo = channel(rng, echo_db=-30.0)  # L = 6 links: 2 streams × 3 antennas
    csi, _ = receiver(rng, static + echo)
    turned = stream_turns(rng, csi, 2, 0.08)  # an Intel 5300's second stream: ~0.08 rad
    moving = np.sum(np.abs(echo - echo.mean(axis=0)) ** 2)

    def excess(split: DynamicWindow) -> float:  # dynamic power beyond the echo's, relative
        return float(np.sum(np.abs(split.dynamic) ** 2) * split.scale**2 / moving)

    shared = window_dynamic(turned, np.ones(T, bool))  # one phase for both streams
    per_stream = window_dynamic(turned, np.ones(T, bool), n_tx=2)
    assert excess(shared) > 2.0  # the turn outweighs the echo
    assert excess(per_stream) < 1.1
    assert energy_kept(per_stream.dynamic, echo) > 0.8
    with pytest.raises(ValueError, match="transmit streams"):
        window_dynamic(turned, np.ones(T, bool), n_tx=4)


def test_the_timing_frame_does_not_depend_on_where_packets_were_referenced(
    rng: np.random.Generator,
) -> None:
    """A delay added to every packet (a receiver locking elsewhere) leaves the window alike."""
    static, echo = channel(rng)
    csi, _ = receiver(rng, static + echo)
    x = np.arange(S) - (S - 1) / 2
    shifted = (csi * np.exp(-1j * 0.3 * x)).astype(np.complex64)  # ~1.5 m more path
    a = window_dynamic(csi, np.ones(T, bool))
    b = window_dynamic(shifted, np.ones(T, bool))
    np.testing.assert_allclose(b.static, a.static, atol=2e-4)
    np.testing.assert_allclose(b.dynamic, a.dynamic, atol=2e-4)
    step = np.sum(a.static[:, 1:] * np.conj(a.static[:, :-1]))
    assert abs(np.angle(step)) < 1e-4  # the frame: the static part's mean step is zero
