"""Training windows in bulk: people + room + radio -> model input, for many windows at once.

One call simulates n windows of one hardware profile that all hold the same number of
people, so every array is dense. Per window: packet times with jitter and burst loss,
the uniform grid the runtime's ``Windower`` would build from them (same nearest-packet
rule), bodies at the chosen packets' times, the channel on the canonical subcarrier
grid, receiver noise, AGC and quantisation, then amplitude normalisation and phase
sanitization as ``window_arrays`` does them (see ``fastpath``; ``exact=True`` runs the
full receiver model and ``window_arrays`` itself instead).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch

from invispose.csi.dynamic import window_dynamic
from invispose.csi.grid import N_CANONICAL, canonical_positions
from invispose.csi.window import window_features
from invispose.sim.body import N_PARTS, TORSO_PART, body_parts, keypoints_major
from invispose.sim.channel import (
    body_channel,
    body_paths,
    los_shadowing,
    phasor,
    static_paths,
    wall_bounces,
)
from invispose.sim.fastpath import canonical_arrays, report_fast
from invispose.sim.hardware import (
    SPEED_OF_LIGHT_MPS,
    SUBCARRIER_SPACING_HZ,
    HardwareProfile,
    canonical_offsets,
    training_subcarriers,
    with_tx,
)
from invispose.sim.impairments import (
    DeviceState,
    chain_response,
    impair,
    packet_times,
    stream_turns,
)
from invispose.sim.layouts import LayoutArrays
from invispose.sim.motion import Motion, pose_at

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
C64 = npt.NDArray[np.complex64]

EXTRA_PACKETS = 4  # packets simulated before the window so its first grid point has one
BAND = 3  # packets either side of a grid point that can be its nearest (jitter << period)
FAR_AWAY_M = 1.0e3
#: profiles whose readers report the receiver gain per packet (``CsiFrame.agc_db``)
GAIN_REPORTED = frozenset({"intel5300"})


@dataclass(slots=True)
class WindowSet:
    """n windows of one profile with ``n_persons`` people each (motion window-major)."""

    layouts: LayoutArrays  # n
    motion: Motion  # n * n_persons
    snr_db: F64  # (n,)
    loss: F64  # (n,)
    n_persons: int
    n_tx: npt.NDArray[np.int64] | None = None  # (n,) transmit antennas in use (default all)


@dataclass(slots=True)
class SimulatedWindows:
    """Model inputs of a WindowSet and the times its ground truth belongs to."""

    amplitude: F32  # (n, L, T, S), zero beyond a window's links
    phase: F32  # (n, L, T, S)
    rel_phase: F32  # (n, L, T, S)
    valid: npt.NDArray[np.bool_]  # (n, T)
    link_mask: npt.NDArray[np.bool_]  # (n, L)
    t_start_s: F64  # (n,) first grid time
    t_end_s: F64  # (n,) last grid time (the newest packet)
    tx_m: F32  # (n, L, 3) per link, tx-major
    rx_m: F32  # (n, L, 3)
    dynamic: C64  # (n, L, T, S) as CsiWindow.dynamic, zero beyond a window's links
    static: C64  # (n, L, S)
    subcarrier_hz: F32  # (S,) carrier offsets of the canonical points
    chain_phase: F32  # (n, L) each link's true chain phase, tx-major (0 beyond the links)


def antenna_positions(
    centre_m: F64, axis: F64, n_elements: int, spacing_m: float
) -> F64:
    """Uniform linear arrays: centres (n, 3), unit axes (n, 3) -> element positions (n, k, 3)."""
    offsets = (np.arange(n_elements) - (n_elements - 1) / 2.0) * spacing_m  # (k,)
    out: F64 = centre_m[:, None, :] + offsets[None, :, None] * axis[:, None, :]
    return out


def link_endpoints(
    layouts: LayoutArrays, profile: HardwareProfile
) -> tuple[F32, F32]:
    """Per-link tx and rx positions (n, L, 3), link l = tx * n_rx + rx."""
    tx = antenna_positions(layouts.tx_centre_m, layouts.tx_axis, profile.n_tx,
                           profile.antenna_spacing_m)  # (n, n_tx, 3)
    rx = antenna_positions(layouts.rx_centre_m, layouts.rx_axis, profile.n_rx,
                           profile.antenna_spacing_m)  # (n, n_rx, 3)
    link_tx = np.repeat(tx, profile.n_rx, axis=1)  # (n, L, 3)
    link_rx = np.tile(rx, (1, profile.n_tx, 1))  # (n, L, 3)
    return link_tx.astype(np.float32), link_rx.astype(np.float32)


def grid_times(
    rng: np.random.Generator, n: int, profile: HardwareProfile, loss: F64,
    window_samples: int, rate_hz: float,
) -> tuple[F64, npt.NDArray[np.bool_], F64]:
    """Packet time used at each grid point (n, T), grid validity (n, T), grid end (n,).

    The rule is ``timegrid.nearest_indices``' (nearest packet within 1.5 periods, ties
    to the earlier one), evaluated for a band of packets around each point at once.
    """
    n_p = window_samples + EXTRA_PACKETS
    times, arrived = packet_times(rng, n, n_p, rate_hz, profile.jitter_s, loss)  # (n, P)
    arrived[:, -1] = True  # a window is cut when a packet arrives: the newest one exists
    t_end = times[:, -1].copy()
    grid = t_end[:, None] - np.arange(window_samples - 1, -1, -1) / rate_hz  # (n, T)
    # grid point i sits near packet i + EXTRA_PACKETS; look BAND packets either side
    centre = np.arange(window_samples) + EXTRA_PACKETS  # (T,)
    cand = np.clip(centre[:, None] + np.arange(-BAND, BAND + 1), 0, n_p - 1)  # (T, 2B+1)
    t_c = times[:, cand]  # (n, T, 2B+1), ascending along the band
    gap = np.where(arrived[:, cand], np.abs(t_c - grid[..., None]), np.inf)
    pick = np.argmin(gap, axis=-1)  # (n, T) first minimum: the earlier packet on ties
    best = np.take_along_axis(gap, pick[..., None], axis=-1)[..., 0]
    valid = best <= 1.5 / rate_hz
    chosen = np.take_along_axis(t_c, pick[..., None], axis=-1)[..., 0]
    return np.where(valid, chosen, grid), valid, t_end


def static_channel(
    layouts: LayoutArrays, tx: F32, rx: F32, profile: HardwareProfile, offsets_hz: F64
) -> tuple[C64, C64]:
    """Line of sight (n, L, S) and the sum of all other fixed paths (n, L, S)."""
    amp, delay = static_paths(
        tx, rx, layouts.size_m, layouts.gamma, layouts.furniture_m,
        layouts.furniture_rcs_m2, layouts.furniture_phase, profile.wavelength_m,
    )  # (n, L, 25 + F)
    turns = delay[..., None] * (profile.carrier_hz + offsets_hz)  # (n, L, P, S)
    paths = amp[..., None] * phasor(turns)  # (n, L, P, S)
    return paths[:, :, 0], paths[:, :, 1:].sum(axis=2)


def body_arrays(
    motion: Motion, times: F64, n: int, c: int
) -> tuple[F32, F32, F32, F32, F32]:
    """Body-part spheroids of n windows × c persons (window-major) at times (n, T).

    Returns coordinate-major centres and axes (3, n, T, Q), radius and half-length
    (n, T, Q) with Q = c · N_PARTS, and body-axis points (3, n, T, c, K) for shadowing.
    """
    n_t = times.shape[1]
    pose = pose_at(motion, np.repeat(times, c, axis=0))  # (n*c, T)
    kp = keypoints_major(pose, motion.height_m[:, None])  # (17, 3, n*c, T)
    centre, unit, radius, half, points = body_parts(kp, motion.height_m[:, None])
    b = N_PARTS

    def coords(a: F32) -> F32:  # (B, 3, n*c, T) -> (3, n, T, c*B)
        a = a.reshape(b, 3, n, c, n_t).transpose(1, 2, 4, 3, 0)
        return np.ascontiguousarray(a).reshape(3, n, n_t, c * b)

    def scalars(a: F32) -> F32:  # (B, n*c, T) -> (n, T, c*B)
        a = a.reshape(b, n, c, n_t).transpose(1, 3, 2, 0)
        return np.ascontiguousarray(a).reshape(n, n_t, c * b)

    k = points.shape[0]
    pts = points.reshape(k, 3, n, c, n_t).transpose(1, 2, 4, 3, 0)  # (3, n, T, c, K)
    return coords(centre), coords(unit), scalars(radius), scalars(half), pts


def simulate_windows(
    rng: np.random.Generator,
    profile: HardwareProfile,
    windows: WindowSet,
    *,
    window_samples: int = 64,
    rate_hz: float = 100.0,
    chunk: int = 16,
    exact: bool = False,
) -> SimulatedWindows:
    """Simulate the windows of ``windows`` as the runtime would see them.

    Default (fast): the channel at the canonical grid's points, ``fastpath`` report and
    transform. ``exact``: the channel at the hardware subcarriers nearest those points
    (``training_subcarriers``), the full receiver model (``impairments.impair``) and the
    runtime's own ``window_arrays``.
    """
    layouts, c = windows.layouts, windows.n_persons
    n, n_t = len(layouts), window_samples
    receiver_rng = np.random.default_rng(rng.integers(0, 2**63 - 1))  # same draws either path
    t_sel, valid, t_end = grid_times(rng, n, profile, windows.loss, n_t, rate_hz)
    tx_ant = antenna_positions(layouts.tx_centre_m, layouts.tx_axis, profile.n_tx,
                               profile.antenna_spacing_m).astype(np.float32)  # (n, A, 3)
    rx_ant = antenna_positions(layouts.rx_centre_m, layouts.rx_axis, profile.n_rx,
                               profile.antenna_spacing_m).astype(np.float32)  # (n, R, 3)
    tx, rx = link_endpoints(layouts, profile)  # (n, L, 3)
    positions = (training_subcarriers(profile.name) if exact
                 else canonical_offsets(profile.name)).astype(np.float64)  # (S,)
    offsets_hz = positions * SUBCARRIER_SPACING_HZ  # (S,)
    h_los, h_rest = static_channel(layouts, tx, rx, profile, offsets_hz)  # (n, L, S)
    if c:
        centre, axis, radius, half, pts = body_arrays(windows.motion, t_sel, n, c)
        paths = body_paths(tx_ant, rx_ant, centre, axis, radius, half, profile.wavelength_m)
        torsos = np.arange(c) * N_PARTS + TORSO_PART
        paths = wall_bounces(paths, tx_ant, rx_ant, centre, torsos, layouts.size_m,
                             layouts.gamma)
        h = body_channel(paths, profile.wavelength_m, offsets_hz, chunk)  # (n, L, T, S)
        shadow = los_shadowing(tx_ant.mean(axis=1), rx_ant.mean(axis=1), pts,
                               profile.wavelength_m)  # (n, T)
        h += shadow[:, None, :, None] * h_los[:, :, None] + h_rest[:, :, None]
    else:
        h = np.broadcast_to((h_los + h_rest)[:, :, None], (n, tx.shape[1], n_t, len(offsets_hz)))
    device = DeviceState.random(receiver_rng, profile, n, positions)
    n_tx = np.full(n, profile.n_tx) if windows.n_tx is None else np.asarray(windows.n_tx)
    n_links = n_tx * profile.n_rx  # (n,) links in use: the first of each window (tx-major)
    amplitude = np.zeros((n, profile.n_links, n_t, N_CANONICAL), dtype=np.float32)
    phase = np.zeros_like(amplitude)
    rel_phase = np.zeros_like(amplitude)
    dynamic = np.zeros(amplitude.shape, dtype=np.complex64)
    static = np.zeros((n, profile.n_links, N_CANONICAL), dtype=np.complex64)
    reports_gain = profile.name in GAIN_REPORTED
    subcarrier_hz = (canonical_offsets(profile.name) * SUBCARRIER_SPACING_HZ).astype(np.float32)
    for k in np.unique(n_tx).tolist():
        rows = np.flatnonzero(n_tx == k)
        used = k * profile.n_rx
        part = h[rows, :used]  # (r, L_k, T, S)
        if exact:
            shaped = np.swapaxes(part, 1, 2).reshape(len(rows), n_t, k, profile.n_rx, -1)
            subcarriers = positions.astype(np.int16)
            sync = np.linalg.norm(layouts.tx_centre_m[rows] - layouts.rx_centre_m[rows], axis=1)
            report, _ = impair(receiver_rng, shaped.astype(np.complex64), with_tx(profile, k),
                               device.take(rows, k), subcarriers, windows.snr_db[rows],
                               sync_delay_s=sync / SPEED_OF_LIGHT_MPS,
                               packet_times_s=t_sel[rows])
            csi = report.csi
            csi[~valid[rows]] = 0  # the runtime zero-fills grid points without a packet
            features = window_features(csi, subcarriers, profile.bandwidth_mhz,
                                       gain_db=report.gain_db if reports_gain else None)
            amp, ph, rel = features.amplitude, features.phase, features.rel_phase
            dyn, stat = features.dynamic, features.static
            subcarrier_hz = features.subcarrier_hz
        else:
            # the same chain phases and timing skews the full receiver model applies
            chains = chain_response(device.take(rows, k), offsets_hz).reshape(len(rows), used, -1)
            part = part * (device.ripple[rows, None, None, :]
                           * chains[:, :, None, :])  # (r, L_k, T, S)
            if k > 1 and profile.cfo_residual_hz > 0:  # each stream's per-packet turn
                turns = stream_turns(receiver_rng, profile, len(rows), n_t, k)  # (r, T, k)
                part = part * np.repeat(np.swapaxes(turns, 1, 2), profile.n_rx,
                                        axis=1)[..., None]  # (r, L_k, T, 1) tx-major
            gen = torch.Generator().manual_seed(int(receiver_rng.integers(0, 2**63 - 1)))
            re, im, gain_db = report_fast(gen, part, windows.snr_db[rows], profile.target_rms,
                                          profile.max_int, profile.agc_drift_db,
                                          profile.agc_step_db, valid[rows])
            amp, ph, rel = canonical_arrays(re, im, canonical_positions(), valid[rows])
            csi = np.empty(re.shape, dtype=np.complex64)  # (r, L_k, T, S)
            csi.real, csi.imag = re, im
            split = window_dynamic(np.swapaxes(csi, 1, 2), valid[rows],
                                   gain_db=gain_db if reports_gain else None, n_tx=k)
            dyn, stat = split.dynamic, split.static
        amplitude[rows, :used] = amp
        phase[rows, :used] = ph
        rel_phase[rows, :used] = rel
        dynamic[rows, :used] = dyn
        static[rows, :used] = stat
    link_mask = np.arange(profile.n_links)[None, :] < n_links[:, None]  # (n, L)
    tx = np.where(link_mask[..., None], tx, 0.0).astype(np.float32)
    rx = np.where(link_mask[..., None], rx, 0.0).astype(np.float32)
    return SimulatedWindows(
        amplitude=amplitude,
        phase=phase,
        rel_phase=rel_phase,
        valid=valid,
        link_mask=link_mask,
        t_start_s=t_end - (n_t - 1) / rate_hz,
        t_end_s=t_end,
        tx_m=tx,
        rx_m=rx,
        dynamic=dynamic,
        static=static,
        subcarrier_hz=subcarrier_hz,
        chain_phase=np.where(link_mask, device.chain_phase.reshape(n, -1), 0.0).astype(np.float32),
    )
