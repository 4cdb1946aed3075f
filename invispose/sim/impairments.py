"""Receiver impairments: what a real NIC does to the channel before it reports it.

Applied in the order the hardware applies them, vectorised over windows (n) and
packets (T), CSI shaped (n, T, n_tx, n_rx, S):

1. the device's fixed frequency response (filter ripple) and per-chain response: a static
   phase and a timing skew per transmit and receive chain (``chain_response``), so every
   antenna pair has its own phase offset and phase slope;
2. thermal noise at the window's SNR (relative to the mean channel power);
3. a per-packet common phase (carrier and PLL phase) shared by every antenna of the
   receiver, and a per-packet timing offset that puts a linear phase slope over
   subcarriers, shared the same way: the device offset, per-packet jitter, and the drift
   of a residual sampling-clock offset (SFO) within one sample period (the packet detector
   re-aligns to whole samples), so the slope wanders from packet to packet;
4. a residual carrier offset (CFO) per packet, left after the receiver's correction: it
   turns the phase between the training symbols the transmit streams are measured on
   (HT-LTFs, 4 µs apart), so each transmit chain's phase changes per packet (common to the
   receiver's antennas);
5. AGC: a per-packet gain tracking the received power, quantised to the chip's step,
   with a slow random wander;
6. quantisation to the report's integer width (rounding, clipping).

``DeviceState`` holds what stays fixed for a device (ripple, chain phases and skews,
timing offset, SFO), so a streaming scene keeps it across calls.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from invispose.sim.hardware import SUBCARRIER_SPACING_HZ, HardwareProfile

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
C64 = npt.NDArray[np.complex64]

TX_POWER_DBM = 15.0  # transmit power: RSSI = TX_POWER_DBM + 10 log10(mean |H|^2)
HT_LTF_S = 4.0e-6  # spacing of the training symbols that measure successive tx streams
PACKET_PERIOD_S = 0.01  # packet spacing ``impair`` assumes when not given packet times


@dataclass(slots=True)
class DeviceState:
    """Fixed properties of n simulated receivers.

    The fields after ``agc_offset_db`` may be None, meaning zero (a device built by hand
    from the first four).
    """

    ripple: C64  # (n, S) complex frequency response at the subcarriers it was drawn for
    chain_phase: F32  # (n, n_tx, n_rx) static phase of each tx/rx chain pair
    timing_offset_s: F32  # (n,) device timing offset
    agc_offset_db: F32  # (n,) where in its step range the AGC settles
    tx_skew_s: F32 | None = None  # (n, n_tx) fixed timing skew of each transmit chain
    rx_skew_s: F32 | None = None  # (n, n_rx) fixed timing skew of each receive chain
    sfo_ppm: F32 | None = None  # (n,) residual sampling-clock offset
    sfo_phase_s: F32 | None = None  # (n,) timing drift at t = 0, within one sample period

    @classmethod
    def random(
        cls,
        rng: np.random.Generator,
        profile: HardwareProfile,
        n: int,
        positions: npt.ArrayLike | None = None,
    ) -> DeviceState:
        """n devices with random ripple, chain phases and skews, timing offset and SFO.

        ``positions`` (S,): subcarrier indices (fractional allowed) the ripple is
        evaluated at; default the profile's frame subcarriers.
        """
        sub = profile.frame_subcarriers if positions is None else positions
        x = np.asarray(sub, dtype=np.float64) / max(float(np.abs(profile.occupied).max()), 1.0)
        # smooth ripple: a few random cosines over the band, in dB and radians
        freq = rng.uniform(0.5, 3.0, (n, 3, 1))
        phase = rng.uniform(0.0, 2 * np.pi, (n, 3, 1))
        weight = rng.normal(0.0, 1.0, (n, 3, 1)) / np.sqrt(3.0)
        shape = (weight * np.cos(np.pi * freq * x + phase)).sum(axis=1)  # (n, S)
        tilt = rng.normal(0.0, 0.5, (n, 1)) * x  # (n, S) band-edge tilt
        mag_db = profile.ripple_db * (shape + tilt)
        ph = 0.12 * profile.ripple_db * shape  # radians: filter group-delay ripple
        ripple = (10.0 ** (mag_db / 20.0) * np.exp(1j * ph)).astype(np.complex64)
        lo, hi = profile.timing_offset_ns
        chain_phase = rng.uniform(0, 2 * np.pi, (n, profile.n_tx, profile.n_rx))
        timing = rng.uniform(lo, hi, n) * 1e-9
        agc = rng.uniform(-0.5, 0.5, n)
        # drawn after the fields above, so those keep their values for a given stream
        skew = profile.chain_skew_ns * 1e-9
        tx_skew = rng.normal(0.0, skew, (n, profile.n_tx))  # (n, n_tx)
        rx_skew = rng.normal(0.0, skew, (n, profile.n_rx))  # (n, n_rx)
        sfo = rng.uniform(-profile.sfo_ppm, profile.sfo_ppm, n)  # (n,)
        # where in its sample period the drift starts (no SFO: no drift, no extra offset)
        sfo_phase = rng.uniform(-0.5, 0.5, n) * sample_period_s(profile) * (profile.sfo_ppm > 0)
        return cls(
            ripple=ripple,
            chain_phase=chain_phase.astype(np.float32),
            timing_offset_s=timing.astype(np.float32),
            agc_offset_db=agc.astype(np.float32),
            tx_skew_s=tx_skew.astype(np.float32),
            rx_skew_s=rx_skew.astype(np.float32),
            sfo_ppm=sfo.astype(np.float32),
            sfo_phase_s=sfo_phase.astype(np.float32),
        )

    def take(self, rows: npt.ArrayLike, n_tx: int | None = None) -> DeviceState:
        """The devices at ``rows`` (index array or mask), keeping their first ``n_tx`` tx chains."""
        idx = np.asarray(rows)
        k = self.chain_phase.shape[1] if n_tx is None else int(n_tx)

        def sub(a: F32 | None) -> F32 | None:
            return None if a is None else a[idx]

        return DeviceState(
            ripple=self.ripple[idx],
            chain_phase=self.chain_phase[idx, :k],
            timing_offset_s=self.timing_offset_s[idx],
            agc_offset_db=self.agc_offset_db[idx],
            tx_skew_s=None if self.tx_skew_s is None else self.tx_skew_s[idx, :k],
            rx_skew_s=sub(self.rx_skew_s),
            sfo_ppm=sub(self.sfo_ppm),
            sfo_phase_s=sub(self.sfo_phase_s),
        )


def sample_period_s(profile: HardwareProfile) -> float:
    """The receiver's baseband sample period (1 / bandwidth)."""
    return 1.0 / (profile.bandwidth_mhz * 1e6)


def chain_response(device: DeviceState, offsets_hz: npt.ArrayLike) -> C64:
    """Fixed per-antenna-pair factor exp(jφ_tr) exp(-j2π Δf (s_t + s_r)): (n, n_tx, n_rx, S).

    ``offsets_hz`` (S,): subcarrier offsets from the carrier. φ_tr is ``chain_phase``;
    s_t, s_r the transmit and receive chains' timing skews (None: zero).
    """
    f = np.asarray(offsets_hz, dtype=np.float64).reshape(-1)  # (S,)
    n, n_tx, n_rx = device.chain_phase.shape
    skew = np.zeros((n, n_tx, n_rx), dtype=np.float64)  # (n, n_tx, n_rx) seconds
    if device.tx_skew_s is not None:
        skew += device.tx_skew_s[:, :, None]
    if device.rx_skew_s is not None:
        skew += device.rx_skew_s[:, None, :]
    angle = device.chain_phase[..., None] - 2.0 * np.pi * skew[..., None] * f  # (n, A, R, S)
    out: C64 = np.exp(1j * angle).astype(np.complex64)
    return out


def sfo_drift_s(device: DeviceState, profile: HardwareProfile, times_s: npt.ArrayLike) -> F64:
    """Timing drift (n, T) of the residual SFO at packet times (n, T), within one sample.

    The sampling clocks drift apart by ``sfo_ppm`` · t; the packet detector re-aligns to
    whole samples, so what reaches the CSI is that drift wrapped into ±half a sample period.
    """
    t = np.asarray(times_s, dtype=np.float64)
    n = device.timing_offset_s.shape[0]
    if device.sfo_ppm is None:
        return np.zeros(np.broadcast_shapes(t.shape, (n, 1)))
    period = sample_period_s(profile)
    start = 0.0 if device.sfo_phase_s is None else device.sfo_phase_s[:, None]
    drift = start + device.sfo_ppm.astype(np.float64)[:, None] * 1e-6 * t + 0.5 * period
    out: F64 = np.mod(drift, period) - 0.5 * period  # (n, T)
    return out


@dataclass(slots=True)
class Reported:
    """What the receiver reports for each packet."""

    csi: C64  # (n, T, n_tx, n_rx, S) integer-valued complex
    gain_db: F32  # (n, T) AGC gain applied
    rssi_dbm: F32  # (n, T) received power estimate
    noise_dbm: F32  # (n,) noise floor


def agc_gain_db(
    rng: np.random.Generator,
    power: F32,
    profile: HardwareProfile,
    offset_db: npt.ArrayLike,
    drift_state_db: F32 | None = None,
) -> tuple[F32, F32]:
    """Per-packet AGC gain (n, T) in dB for received powers (n, T), and the drift state (n,).

    The gain brings the mean |CSI| to the profile's target, in steps of ``agc_step_db``,
    with a slow random-walk wander (continued from ``drift_state_db`` when streaming).
    """
    n, n_t = power.shape
    start = np.asarray(
        rng.normal(0.0, profile.agc_drift_db, n) if drift_state_db is None else drift_state_db,
        dtype=np.float64,
    ).reshape(n)
    steps = rng.normal(0.0, profile.agc_drift_db / np.sqrt(max(n_t, 1)) * 0.5, (n, n_t))
    drift = start[:, None] + np.cumsum(steps, axis=1)  # (n, T)
    target_db = 20.0 * np.log10(profile.target_rms)
    wanted = target_db - 10.0 * np.log10(np.maximum(power, 1e-30)) + drift
    step = profile.agc_step_db
    offset = np.asarray(offset_db, dtype=np.float32)[:, None] * step
    gain = (np.round((wanted - offset) / step) * step + offset).astype(np.float32)
    return gain, drift[:, -1].astype(np.float32)


def timing_phase(
    offsets_hz: npt.ArrayLike, timing_s: F32, common_phase: F32
) -> C64:
    """Per-packet factor exp(j(φ - 2π Δf δ)) for offsets (S,), timing and phase (n, T)."""
    f = np.asarray(offsets_hz, dtype=np.float64)
    angle = common_phase[..., None] - 2.0 * np.pi * timing_s[..., None].astype(np.float64) * f
    out: C64 = np.exp(1j * angle).astype(np.complex64)  # (n, T, S)
    return out


def stream_turns(
    rng: np.random.Generator, profile: HardwareProfile, n: int, n_t: int, n_tx: int
) -> C64:
    """Per-packet phase factor (n, T, n_tx) of each transmit stream from the residual CFO.

    The offset left after the receiver's correction turns the phase between the HT-LTFs
    that measure successive streams (``HT_LTF_S`` apart); stream 0 is the reference.
    """
    cfo_hz = rng.normal(0.0, profile.cfo_residual_hz, (n, n_t))  # (n, T)
    turn = 2.0 * np.pi * HT_LTF_S * cfo_hz[..., None] * np.arange(n_tx)  # (n, T, A)
    out: C64 = np.exp(1j * turn).astype(np.complex64)
    return out


def impair(
    rng: np.random.Generator,
    channel: C64,
    profile: HardwareProfile,
    device: DeviceState,
    subcarriers: npt.ArrayLike,
    snr_db: npt.ArrayLike,
    *,
    drift_state_db: F32 | None = None,
    quantise: bool = True,
    sync_delay_s: npt.ArrayLike = 0.0,
    packet_times_s: npt.ArrayLike | None = None,
) -> tuple[Reported, F32]:
    """Report CSI for the clean channel (n, T, n_tx, n_rx, S) at ``subcarriers`` (S,).

    ``device.ripple`` must hold these subcarriers' columns. ``sync_delay_s`` (n,) is the
    delay the receiver's packet detection locks onto (the first path): real CSI is
    referenced to it, so it leaves the phase slope. ``packet_times_s`` (n, T) or (T,):
    when each packet was received, for the SFO drift (default: every ``PACKET_PERIOD_S``
    from 0). Returns the report and the AGC drift state (n,) to pass to the next call of
    a stream.
    """
    n, n_t, n_tx, n_rx, n_s = channel.shape
    offsets = np.asarray(subcarriers, dtype=np.float64) * SUBCARRIER_SPACING_HZ  # (S,)
    fixed = device.ripple[:, None, None, :] * chain_response(device, offsets)  # (n, A, R, S)
    h = channel * fixed[:, None]  # (n, T, A, R, S)
    power = np.mean(np.abs(h) ** 2, axis=(2, 3, 4))  # (n, T) per packet
    mean_power = power.mean(axis=1)  # (n,)
    snr = 10.0 ** (np.asarray(snr_db, dtype=np.float64) / 10.0)  # (n,)
    sigma = np.sqrt(mean_power / snr / 2.0).astype(np.float32)  # (n,) per component
    noise = rng.standard_normal((n, n_t, n_tx, n_rx, n_s, 2), dtype=np.float32)
    noise *= sigma[:, None, None, None, None, None]
    h = h + noise.view(np.complex64)[..., 0]

    common = rng.uniform(0.0, 2 * np.pi, (n, n_t)).astype(np.float32)
    jitter = rng.normal(0.0, profile.timing_jitter_ns * 1e-9, (n, n_t)).astype(np.float32)
    sync = np.broadcast_to(np.asarray(sync_delay_s, dtype=np.float32), (n,))[:, None]
    times = (np.arange(n_t) * PACKET_PERIOD_S if packet_times_s is None
             else np.asarray(packet_times_s, dtype=np.float64))  # (n, T) or (T,)
    sfo = sfo_drift_s(device, profile, times).astype(np.float32)  # (n, T)
    timing = device.timing_offset_s[:, None] + jitter + sfo - sync  # (n, T)
    h = h * timing_phase(offsets, timing, common)[:, :, None, None, :]

    gain_db, drift = agc_gain_db(
        rng, power + sigma[:, None] ** 2 * 2.0, profile, device.agc_offset_db, drift_state_db
    )
    if n_tx > 1 and profile.cfo_residual_hz > 0:
        h = h * stream_turns(rng, profile, n, n_t, n_tx)[..., None, None]
    h = h * (10.0 ** (gain_db / 20.0)).astype(np.float32)[:, :, None, None, None]
    if quantise:
        limit = float(profile.max_int)
        h = (np.clip(np.round(h.real), -limit, limit)
             + 1j * np.clip(np.round(h.imag), -limit, limit)).astype(np.complex64)
    rssi = TX_POWER_DBM + 10.0 * np.log10(np.maximum(power, 1e-30))
    noise_dbm = TX_POWER_DBM + 10.0 * np.log10(np.maximum(2 * sigma**2, 1e-30))
    report = Reported(
        csi=h.astype(np.complex64, copy=False),
        gain_db=gain_db,
        rssi_dbm=rssi.astype(np.float32),
        noise_dbm=noise_dbm.astype(np.float32),
    )
    return report, drift


def packet_times(
    rng: np.random.Generator, n: int, n_packets: int, rate_hz: float, jitter_s: float,
    loss: npt.ArrayLike,
) -> tuple[F64, npt.NDArray[np.bool_]]:
    """Nominal-grid packet times with jitter (n, P) ending near 0, and which arrived (n, P).

    Losses come in short bursts (a two-state chain) with the per-window mean rate ``loss``.
    """
    k = np.arange(n_packets - 1, -1, -1, dtype=np.float64)  # (P,) P-1 .. 0
    times = -k / rate_hz + rng.normal(0.0, jitter_s, (n, n_packets))
    p = np.asarray(loss, dtype=np.float64).reshape(-1, 1) * np.ones((n, 1))  # (n, 1)
    # burst losses: enter a loss state with prob p/3 per packet, stay with prob 2/3
    enter = rng.random((n, n_packets)) < p / 3.0
    stay = rng.random((n, n_packets)) < 2.0 / 3.0
    lost = np.zeros((n, n_packets), dtype=bool)
    state = rng.random(n) < p[:, 0]
    for i in range(n_packets):
        state = np.where(state, stay[:, i], enter[:, i])
        lost[:, i] = state
    return times, ~lost
