"""Window arrays, link order and the per-router Windower."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from invispose.csi.formats import read_capture
from invispose.csi.grid import canonical_positions, kept_mask
from invispose.csi.window import Windower, link_positions, window_arrays
from invispose.schemas import CsiFrame, CsiWindow

K20 = np.arange(-32, 32)
TX_POS = np.array([[0.0, 0.0, 1.0], [0.1, 0.0, 1.0]], dtype=np.float32)
RX_POS = np.array([[4.0, 3.0, 1.0], [4.0, 3.1, 1.0], [4.0, 3.2, 1.0]], dtype=np.float32)


def random_csi(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return (rng.normal(size=shape) + 1j * rng.normal(size=shape)).astype(np.complex64)


def test_shapes_and_tx_major_link_order(rng: np.random.Generator) -> None:
    n_tx, n_rx, t = 2, 3, 10
    gain = np.array([[1.0, 2.0, 3.0], [10.0, 20.0, 30.0]])  # link (tx, rx) strength
    csi = gain[None, :, :, None] * np.exp(1j * rng.uniform(-3, 3, size=(t, n_tx, n_rx, 1)))
    csi = np.broadcast_to(csi, (t, n_tx, n_rx, K20.size)).copy()
    amp, phase, rel = window_arrays(csi, K20, 20)
    assert amp.shape == phase.shape == rel.shape == (6, t, 32)
    assert amp.dtype == phase.dtype == rel.dtype == np.float32
    per_link = amp.mean(axis=(1, 2))  # (L,)
    np.testing.assert_allclose(per_link / per_link[0], gain.reshape(-1), rtol=1e-4)
    tx, rx = link_positions(TX_POS, RX_POS)
    assert tx.shape == rx.shape == (6, 3) and tx.dtype == np.float32
    for link in range(6):
        np.testing.assert_array_equal(tx[link], TX_POS[link // n_rx])
        np.testing.assert_array_equal(rx[link], RX_POS[link % n_rx])


def test_leading_batch_dims_and_sanitized_phase(rng: np.random.Generator) -> None:
    csi = random_csi(rng, (4, 5, 8, 1, 2, K20.size))  # (B1, B2, T, n_tx, n_rx, n_sub)
    csi[..., (K20 == 0) | (np.abs(K20) > 28)] = 0
    amp, phase, rel = window_arrays(csi, K20, 20, n_out=16)
    assert amp.shape == rel.shape == (4, 5, 2, 8, 16)
    single_amp, single_phase, single_rel = window_arrays(csi[3, 4], K20, 20, n_out=16)
    np.testing.assert_allclose(amp[3, 4], single_amp, atol=1e-5)
    np.testing.assert_allclose(phase[3, 4], single_phase, atol=1e-4)
    np.testing.assert_allclose(rel[3, 4], single_rel, atol=1e-4)
    pos = canonical_positions(16)
    np.testing.assert_allclose(phase.mean(axis=-1), 0.0, atol=1e-4)
    np.testing.assert_allclose((phase * pos).sum(axis=-1), 0.0, atol=1e-3)
    rms = np.sqrt(np.mean(amp**2, axis=(-3, -2, -1)))  # per window: links, packets, subcarriers
    np.testing.assert_allclose(rms, 1.0, rtol=1e-4)
    assert np.sqrt(np.mean(amp**2, axis=(-3, -1))).std() > 0.01  # packets keep their gains


def test_timing_slope_and_offset_vanish_from_phase(rng: np.random.Generator) -> None:
    k = np.arange(-128, 128)
    channel = 1.0 + 0.2 * np.cos(2 * np.pi * k / 90.0)  # real: no phase of its own
    theta = rng.uniform(-np.pi, np.pi, size=(6, 1, 1, 1))
    slope = rng.uniform(-1.5, 1.5, size=(6, 1, 1, 1))  # rad per bin: steep timing offsets
    csi = channel * np.exp(1j * (theta + slope * k))  # (T, 1, 1, 256)
    amp, phase, rel = window_arrays(csi, k, 80)
    np.testing.assert_allclose(phase, 0.0, atol=1e-3)
    assert amp.shape == rel.shape == (1, 6, 32)
    np.testing.assert_allclose(rel, 0.0, atol=1e-6)  # one link: nothing to be relative to


def test_static_channel_has_no_relative_phase(rng: np.random.Generator) -> None:
    k = np.arange(-128, 128)
    n_t, n_tx, n_rx = 12, 2, 3
    # a fixed channel per link: its own gain, phase and delay, a ripple over the band
    gain = rng.uniform(0.5, 2.0, size=(n_tx, n_rx, 1))
    own = rng.uniform(-np.pi, np.pi, size=(n_tx, n_rx, 1))
    delay = rng.uniform(-0.02, 0.02, size=(n_tx, n_rx, 1))  # rad per bin
    channel = gain * (1.0 + 0.2 * np.cos(2 * np.pi * k / 90.0)) * np.exp(1j * (own + delay * k))
    theta = rng.uniform(-np.pi, np.pi, size=(n_t, 1, 1, 1))  # per packet, all links alike
    slope = rng.uniform(-1.5, 1.5, size=(n_t, 1, 1, 1))  # rad per bin: steep timing offsets
    csi = channel * np.exp(1j * (theta + slope * k))  # (T, n_tx, n_rx, 256)
    _, _, rel = window_arrays(csi, k, 80)
    assert rel.shape == (6, n_t, 32)
    np.testing.assert_allclose(rel, 0.0, atol=1e-3)


def test_a_moving_path_shows_in_relative_phase(rng: np.random.Generator) -> None:
    n_t, n_rx = 32, 3
    aoa = np.linspace(0.0, np.pi / 3, n_t)  # (T,) a reflector swinging round the receiver
    # half-wavelength receive antennas: antenna r sees the plane wave pi r sin(aoa) later
    lag = -np.pi * np.arange(n_rx)[None, :] * np.sin(aoa)[:, None]  # (T, n_rx)
    theta = rng.uniform(-np.pi, np.pi, size=(n_t, 1))  # per packet, all antennas alike
    slope = rng.uniform(-0.5, 0.5, size=(n_t, 1, 1))  # rad per bin
    csi = np.exp(1j * (lag + theta))[:, None, :, None] * np.exp(1j * slope[:, None] * K20)
    _, phase, rel = window_arrays(csi, K20, 20)  # (L, T, S) each, L = 1 * 3
    np.testing.assert_allclose(phase, 0.0, atol=1e-4)  # a flat channel on every link
    # expected by hand: the lag against antenna 0, minus its circular mean over the window
    mean = np.angle(np.exp(1j * lag).sum(axis=0))  # (n_rx,)
    expected = np.angle(np.exp(1j * (lag - mean)))  # (T, n_rx)
    expected = np.broadcast_to(expected.T[:, :, None], rel.shape)  # (L, T, S)
    np.testing.assert_allclose(rel, expected, atol=1e-3)
    np.testing.assert_allclose(rel[0], 0.0, atol=1e-6)
    assert rel[1].std(axis=0).min() > 0.5 and rel[2].std(axis=0).min() > 0.5


def test_zero_filled_packets_are_left_out_of_relative_phase(rng: np.random.Generator) -> None:
    csi = random_csi(rng, (16, 1, 3, K20.size))  # (T, n_tx, n_rx, n_sub)
    arrived = np.ones(16, dtype=bool)
    arrived[[2, 3, 9]] = False
    csi[~arrived] = 0  # the simulator's missing packets
    _, _, rel = window_arrays(csi, K20, 20)
    _, _, rel_arrived = window_arrays(csi[arrived], K20, 20)
    assert not rel[:, ~arrived].any()
    np.testing.assert_allclose(rel[:, arrived], rel_arrived, atol=1e-5)


def make_frame(
    i: int,
    rng: np.random.Generator,
    n_rx: int = 3,
    device_time_s: float | None = None,
) -> CsiFrame:
    t = i / 100.0 if device_time_s is None else device_time_s
    return CsiFrame(
        router_id="r1",
        seq=i,
        device_time_s=t,
        arrival_time_s=1000.0 + t + 0.005,
        csi=random_csi(rng, (2, n_rx, K20.size)),
        subcarriers=K20.astype(np.int16),
        channel=11,
        format="sim",
    )


def make_windower(**kwargs: object) -> Windower:
    options: dict[str, object] = {
        "router_id": "r1",
        "space_id": "lab",
        "tx_pos_m": TX_POS,
        "rx_pos_m": RX_POS,
        "room_size_m": (5.0, 4.0, 2.5),
    }
    return Windower(**{**options, **kwargs})  # type: ignore[arg-type]


def test_windower_stream_of_frames(rng: np.random.Generator) -> None:
    win = make_windower(window_samples=64, capacity=100)
    assert win.make_window() is None
    frames = [make_frame(i, rng) for i in range(300)]
    for frame in frames[:10]:
        win.push(frame)
    first = win.make_window()
    assert isinstance(first, CsiWindow)
    # 10 packets fill 11 points: a grid point reaches 1.5 periods for its packet
    assert first.valid.sum() == 11 and first.valid[-11:].all()
    assert not first.amplitude[:, :-11].any()
    for frame in frames[10:]:
        win.push(frame)
    window = win.make_window()
    assert window is not None
    assert window.amplitude.shape == window.phase.shape == (6, 64, 32)
    assert window.valid.all() and window.valid.shape == (64,)
    assert window.t_end_s == pytest.approx(frames[-1].arrival_time_s)
    assert window.seq == 1 and window.n_links == 6
    assert window.carrier_hz == pytest.approx(2.462e9)
    assert window.tx_pos_m.shape == (6, 3)
    np.testing.assert_allclose(window.rx_pos_m[4], RX_POS[1])
    # the window is exactly window_arrays of the last 64 packets
    stack = np.stack([f.csi for f in frames[-64:]])  # (T, n_tx, n_rx, n_sub)
    amp, phase, rel = window_arrays(stack, K20, 20)
    np.testing.assert_allclose(window.amplitude, amp, atol=1e-6)
    np.testing.assert_allclose(window.phase, phase, atol=1e-6)
    assert window.rel_phase.shape == (6, 64, 32) and window.rel_phase.dtype == np.float32
    np.testing.assert_allclose(window.rel_phase, rel, atol=1e-5)
    assert np.abs(window.rel_phase[1:]).mean() > 0.5  # random links differ from link 0


def test_windower_gap_marks_points_invalid(rng: np.random.Generator) -> None:
    win = make_windower(window_samples=32)
    frames = {i: make_frame(i, rng) for i in list(range(40)) + list(range(50, 60))}
    for frame in frames.values():
        win.push(frame)
    window = win.make_window()
    assert window is not None
    grid = 0.28 + np.arange(32) / 100.0
    # packets 0.40..0.49 missing; 0.40 and 0.49 are still within 15 ms of a packet
    expected = ~((grid > 0.405) & (grid < 0.485))
    np.testing.assert_array_equal(window.valid, expected)
    assert not window.amplitude[:, ~window.valid].any()
    assert not window.rel_phase[:, ~window.valid].any()
    # the same as window_arrays of each grid point's packet, zero-filled where none
    nearest = [*range(28, 40), 39, *[None] * 8, 50, *range(50, 60)]  # (T,) packet per point
    zeros = np.zeros_like(frames[0].csi)
    stack = np.stack([zeros if i is None else frames[i].csi for i in nearest])
    amp, phase, rel = window_arrays(stack, K20, 20)
    np.testing.assert_allclose(window.amplitude, amp, atol=1e-6)
    np.testing.assert_allclose(window.phase, phase, atol=1e-6)
    np.testing.assert_allclose(window.rel_phase, rel, atol=1e-5)


def test_windower_follows_receive_antenna_switches(rng: np.random.Generator) -> None:
    win = make_windower(window_samples=20)
    for i in range(30):
        win.push(make_frame(i, rng, n_rx=3))
    for i in range(30, 35):
        win.push(make_frame(i, rng, n_rx=2))
    window = win.make_window()
    assert window is not None
    assert window.n_links == 4
    assert window.valid.sum() == 5 + 1  # the 1.5-period reach adds one point
    np.testing.assert_allclose(window.rx_pos_m[:2], RX_POS[:2])
    for i in range(35, 40):
        win.push(make_frame(i, rng, n_rx=3))
    window = win.make_window()
    assert window is not None and window.n_links == 6
    # 3-antenna history from before the switch survives: only 0.31..0.33 stay empty
    assert window.valid.sum() == 20 - 3


def test_windower_drops_unplaceable_frames_and_resets_on_clock_jump(
    rng: np.random.Generator,
) -> None:
    win = make_windower(window_samples=16, rx_pos_m=RX_POS[:2])
    win.push(make_frame(0, rng, n_rx=3))
    assert win.frames_dropped == 1 and win.make_window() is None
    for i in range(100, 130):
        win.push(make_frame(i, rng, n_rx=2))
    win.push(make_frame(0, rng, n_rx=2, device_time_s=0.05))  # the device rebooted
    assert win.buffer_resets == 1
    window = win.make_window()
    assert window is not None and window.valid.sum() == 2  # the packet and 10 ms before it


def test_windower_buffer_is_bounded(rng: np.random.Generator) -> None:
    win = make_windower(window_samples=16, capacity=20)
    frames = [make_frame(i, rng) for i in range(500)]
    for i, frame in enumerate(frames):
        win.push(frame)
        if i % 7 == 0:
            win.make_window()  # processed packets are cached, then overwritten
    window = win.make_window()
    assert window is not None and window.valid.all()
    assert win.frames_pushed == 500
    amp, phase, rel = window_arrays(np.stack([f.csi for f in frames[-16:]]), K20, 20)
    np.testing.assert_allclose(window.amplitude, amp, atol=1e-6)
    np.testing.assert_allclose(window.phase, phase, atol=1e-6)
    np.testing.assert_allclose(window.rel_phase, rel, atol=1e-5)


def test_real_intel_stream_with_antenna_switches(shared_data: Path) -> None:
    frames = read_capture(shared_data / "intel5300" / "los_100.dat").frames
    win = make_windower(window_samples=64)
    links_seen = set()
    for i, frame in enumerate(frames):
        win.push(frame)
        if i % 25 == 0:
            window = win.make_window()
            assert window is not None
            links_seen.add(window.n_links)
            assert np.isfinite(window.amplitude).all() and np.isfinite(window.phase).all()
            assert np.isfinite(window.rel_phase).all()
            assert window.valid[-1]
            assert window.amplitude.shape == (window.n_links, 64, 32)
    assert links_seen == {2, 3}  # Ntx 1 with Nrx switching between 3 and 2
    assert win.frames_dropped == 0


@pytest.mark.parametrize(
    ("relative", "chipset", "span"),
    [
        ("esp32/example_100hz_pitraffic.csv", None, (-26, 26)),
        ("intel5300/example.dat", None, (-28, 28)),
        ("nexmon/example_43455c0.pcap", None, (-122, -6)),  # non-HT duplicate, lower 40 MHz
        ("nexmon/example_4366c0.pcap", None, (-122, -70)),  # 20 MHz frame, lowest sub-channel
        ("nexmon/example_4358.pcap", "bcm4358", (-122, 122)),
    ],
)
def test_real_captures_map_onto_the_canonical_grid(
    shared_data: Path, relative: str, chipset: str | None, span: tuple[int, int]
) -> None:
    frames = read_capture(shared_data / relative, chipset=chipset).frames[:64]
    csi = np.stack([f.csi for f in frames])  # (T, n_tx, n_rx, n_sub)
    sub, bw = frames[0].subcarriers, frames[0].bandwidth_mhz
    kept = sub[kept_mask(sub, bw, csi)]
    assert (kept.min(), kept.max()) == span
    amp, phase, rel = window_arrays(csi, sub, bw)
    assert amp.shape[1:] == rel.shape[1:] == (len(frames), 32)
    assert np.isfinite(amp).all() and np.isfinite(phase).all() and np.isfinite(rel).all()
    np.testing.assert_allclose(rel[0], 0.0, atol=1e-6)
    assert np.abs(rel).max() <= np.pi + 1e-6
    np.testing.assert_allclose(np.sqrt(np.mean(amp**2)), 1.0, rtol=1e-4)  # one gain a window
    np.testing.assert_allclose(phase.mean(axis=-1), 0.0, atol=1e-4)


def test_windower_follows_a_change_of_occupied_band(rng: np.random.Generator) -> None:
    k = np.arange(-128, 128)
    narrow = (np.abs(k + 96) <= 26) & (k != -96)  # a 20 MHz frame in an 80 MHz capture
    win = Windower(
        router_id="n",
        space_id="lab",
        tx_pos_m=TX_POS[:1],
        rx_pos_m=RX_POS[:1],
        room_size_m=(5.0, 4.0, 2.5),
        window_samples=32,
    )
    frames = []
    for i in range(300):
        csi = random_csi(rng, (1, 1, k.size)) + 0.001
        if i < 100:
            csi = np.where(narrow, csi, 0.001).astype(np.complex64)
        frames.append(
            CsiFrame("n", i, i / 100.0, i / 100.0, csi, k.astype(np.int16), bandwidth_mhz=80)
        )
    for frame in frames[:100]:
        win.push(frame)
        win.make_window()
    expected_narrow = window_arrays(np.stack([f.csi for f in frames[68:100]]), k, 80)
    narrow_window = win.make_window()
    assert narrow_window is not None
    np.testing.assert_allclose(narrow_window.amplitude, expected_narrow[0], atol=1e-5)
    np.testing.assert_allclose(narrow_window.rel_phase, expected_narrow[2], atol=1e-5)
    for frame in frames[100:]:
        win.push(frame)
        win.make_window()
    window = win.make_window()
    assert window is not None
    expected = window_arrays(np.stack([f.csi for f in frames[-32:]]), k, 80)
    np.testing.assert_allclose(window.amplitude, expected[0], atol=1e-5)
    np.testing.assert_allclose(window.phase, expected[1], atol=1e-4)
    np.testing.assert_allclose(window.rel_phase, expected[2], atol=1e-5)
