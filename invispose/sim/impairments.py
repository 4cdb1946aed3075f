"""Receiver impairments: what a real NIC does to the channel before it reports it.

Applied in the order the hardware applies them, vectorised over windows (n) and
packets (T), CSI shaped (n, T, n_tx, n_rx, S):

1. the device's fixed frequency response (filter ripple) and static per-chain phases;
2. thermal noise at the window's SNR (relative to the mean channel power);
3. a per-packet common phase (carrier and PLL phase) shared by every antenna of the
   receiver, and a per-packet timing offset (device offset + jitter) that puts a
   linear phase slope over subcarriers, shared the same way;
4. AGC: a per-packet gain tracking the received power, quantised to the chip's step,
   with a slow random wander;
5. quantisation to the report's integer width (rounding, clipping).

``DeviceState`` holds what stays fixed for a device (ripple, chain phases, timing
offset), so a streaming scene keeps it across calls.
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


@dataclass(slots=True)
class DeviceState:
    """Fixed properties of n simulated receivers."""

    ripple: C64  # (n, S) complex frequency response at the subcarriers it was drawn for
    chain_phase: F32  # (n, n_tx, n_rx) static phase of each tx/rx chain pair
    timing_offset_s: F32  # (n,) device timing offset
    agc_offset_db: F32  # (n,) where in its step range the AGC settles

    @classmethod
    def random(
        cls,
        rng: np.random.Generator,
        profile: HardwareProfile,
        n: int,
        positions: npt.ArrayLike | None = None,
    ) -> DeviceState:
        """n devices with random ripple, chain phases and timing offset.

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
        return cls(
            ripple=ripple,
            chain_phase=rng.uniform(0, 2 * np.pi, (n, profile.n_tx, profile.n_rx)).astype(
                np.float32
            ),
            timing_offset_s=(rng.uniform(lo, hi, n) * 1e-9).astype(np.float32),
            agc_offset_db=rng.uniform(-0.5, 0.5, n).astype(np.float32),
        )


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
) -> tuple[Reported, F32]:
    """Report CSI for the clean channel (n, T, n_tx, n_rx, S) at ``subcarriers`` (S,).

    ``device.ripple`` must hold these subcarriers' columns. ``sync_delay_s`` (n,) is the
    delay the receiver's packet detection locks onto (the first path): real CSI is
    referenced to it, so it leaves the phase slope. Returns the report and the AGC
    drift state (n,) to pass to the next call of a stream.
    """
    n, n_t, n_tx, n_rx, n_s = channel.shape
    offsets = np.asarray(subcarriers, dtype=np.float64) * SUBCARRIER_SPACING_HZ  # (S,)
    h = channel * device.ripple[:, None, None, None, :]
    h = h * np.exp(1j * device.chain_phase).astype(np.complex64)[:, None, :, :, None]
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
    timing = device.timing_offset_s[:, None] + jitter - sync  # (n, T)
    h = h * timing_phase(offsets, timing, common)[:, :, None, None, :]

    gain_db, drift = agc_gain_db(
        rng, power + sigma[:, None] ** 2 * 2.0, profile, device.agc_offset_db, drift_state_db
    )
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
