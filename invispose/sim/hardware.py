"""Hardware profiles: what each CSI receiver reports and how it distorts the channel.

A profile fixes the antenna counts, the band (carrier, bandwidth, the subcarriers a
reader of that hardware emits), the integer format of the report, and the ranges of the
impairments the simulator draws per device and per packet: SNR, timing offset (the
phase slope over subcarriers), per-chain timing skew, residual sampling-clock and carrier
offsets, AGC step size, packet loss and timing jitter. The ranges
are set from the real captures in ``shared/data/csi`` where those say something (ESP32
slope about 0.02 rad per subcarrier, Intel 5300 about -0.9 rad per two-index group,
int8 magnitudes of 20-30) and from the chips' documentation otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np
import numpy.typing as npt

from invispose.csi.grid import N_CANONICAL, canonical_positions, kept_mask
from invispose.csi.grid import SPEED_OF_LIGHT_MPS as SPEED_OF_LIGHT_MPS  # re-exported
from invispose.csi.grid import SUBCARRIER_SPACING_HZ as SUBCARRIER_SPACING_HZ
from invispose.errors import SimulationError

# SNR against link length: a profile's ``snr_db`` range holds at SNR_REFERENCE_M; longer
# links lose 10·n·log10(d / d_ref) dB with a path-loss exponent n drawn per window (2 in
# free space, up to ~3 through indoor clutter), shorter ones gain as much
SNR_REFERENCE_M = 4.0
PATH_LOSS_EXPONENT = (2.0, 3.0)
SNR_LIMITS_DB = (5.0, 45.0)  # a report below ~5 dB is not decoded; above ~45 dB the ADC rules

IntArray = npt.NDArray[np.int16]


def _indices(lo: int, hi: int, *, skip: tuple[int, ...] = ()) -> IntArray:
    idx = [i for i in range(lo, hi + 1) if i not in skip]
    return np.asarray(idx, dtype=np.int16)


@dataclass(frozen=True, slots=True)
class HardwareProfile:
    """One receiver model: band, antennas, report format and impairment ranges."""

    name: str  # profile name used in WindowBatch.hardware and configs
    chipset: str  # CsiFrame.chipset
    wire_format: str  # reader that decodes its wire output ("esp32", "nexmon", "intel5300", "")
    n_tx: int
    n_rx: int
    carrier_hz: float
    channel: int  # 802.11 channel number of the carrier (centre channel for wide bands)
    bandwidth_mhz: int
    frame_subcarriers: IntArray  # int16 (n_sub,) indices a reader of this hardware emits
    occupied: IntArray  # int16 (n_occ,) indices that carry channel (others hold noise or 0)
    zero_unoccupied: bool  # True: non-occupied bins read 0 (ESP32); False: noise (Broadcom)
    bits: int  # signed integer width of each real/imaginary component
    target_rms: float  # mean |CSI| the AGC aims for, in integer units
    snr_db: tuple[float, float]  # per-window SNR range
    timing_offset_ns: tuple[float, float]  # per-device timing offset range
    timing_jitter_ns: float  # per-packet timing offset spread (std)
    agc_step_db: float  # AGC gain resolution
    agc_drift_db: float  # std of the slow AGC gain wander over a window
    loss: tuple[float, float]  # per-window packet loss probability range
    jitter_s: float  # std of packet arrival times around the nominal grid
    ripple_db: float  # std of the device's fixed frequency-response ripple
    antenna_spacing_m: float  # element spacing of the arrays (tx and rx)
    tx_streams: tuple[int, ...] = ()  # transmit antenna counts training windows draw from
    chain_skew_ns: float = 0.0  # std of each tx/rx chain's fixed timing skew (0: one chain)
    sfo_ppm: float = 0.0  # residual sampling-clock offset range (uniform ±), parts per million
    cfo_residual_hz: float = 0.0  # std of the per-packet carrier offset left after correction

    @property
    def wavelength_m(self) -> float:
        """Carrier wavelength."""
        return SPEED_OF_LIGHT_MPS / self.carrier_hz

    @property
    def n_links(self) -> int:
        """Transmit × receive antenna pairs."""
        return self.n_tx * self.n_rx

    @property
    def max_int(self) -> int:
        """Largest magnitude of one integer component."""
        return (1 << (self.bits - 1)) - 1


_LLTF = _indices(-26, 26, skip=(0,))  # 52 LLTF subcarriers with channel
_HT20_GROUPS = np.asarray([*range(-28, -1, 2), -1, *range(1, 28, 2), 28], dtype=np.int16)
_VHT80 = _indices(-122, 122, skip=(-1, 0, 1))  # 242 data + pilot tones
_HT40 = _indices(-58, 58, skip=(-1, 0, 1))  # 114 data + pilot tones

PROFILES: dict[str, HardwareProfile] = {
    "esp32": HardwareProfile(
        name="esp32",
        chipset="esp32",
        wire_format="esp32",
        n_tx=1,
        n_rx=1,
        carrier_hz=2.437e9,
        channel=6,
        bandwidth_mhz=20,
        frame_subcarriers=_indices(-32, 31),
        occupied=_LLTF,
        zero_unoccupied=True,
        bits=8,
        target_rms=22.0,
        snr_db=(18.0, 32.0),
        timing_offset_ns=(-20.0, 5.0),
        timing_jitter_ns=1.2,
        agc_step_db=1.0,
        agc_drift_db=1.0,
        loss=(0.0, 0.12),
        jitter_s=0.002,
        ripple_db=2.0,
        antenna_spacing_m=0.06,
    ),
    "intel5300": HardwareProfile(
        name="intel5300",
        chipset="iwl5300",
        wire_format="intel5300",
        n_tx=3,
        n_rx=3,
        carrier_hz=5.18e9,
        channel=36,
        bandwidth_mhz=20,
        frame_subcarriers=_HT20_GROUPS,
        occupied=_HT20_GROUPS,
        zero_unoccupied=True,
        bits=8,
        target_rms=22.0,
        snr_db=(22.0, 38.0),
        timing_offset_ns=(150.0, 300.0),
        timing_jitter_ns=20.0,
        agc_step_db=1.0,
        agc_drift_db=0.7,
        loss=(0.0, 0.08),
        jitter_s=0.0005,
        ripple_db=2.5,
        antenna_spacing_m=0.029,
        tx_streams=(1, 2, 3),  # the sender's stream count varies (the sample files: 1 and 2)
        chain_skew_ns=3.0,  # separate RF chains and filters: a few ns between antennas
        sfo_ppm=1.0,
        cfo_residual_hz=1500.0,
    ),
    "nexmon": HardwareProfile(
        name="nexmon",
        chipset="bcm43455c0",
        wire_format="nexmon",
        n_tx=1,
        n_rx=1,
        carrier_hz=5.21e9,
        channel=42,
        bandwidth_mhz=80,
        frame_subcarriers=_indices(-128, 127),
        occupied=_VHT80,
        zero_unoccupied=False,
        bits=16,
        target_rms=1000.0,
        snr_db=(20.0, 35.0),
        timing_offset_ns=(-60.0, 60.0),
        timing_jitter_ns=4.0,
        agc_step_db=1.5,
        agc_drift_db=0.7,
        loss=(0.0, 0.1),
        jitter_s=0.001,
        ripple_db=2.0,
        antenna_spacing_m=0.029,
        sfo_ppm=0.5,
    ),
    # held out of training: the cross-hardware split's profile (Atheros CSI Tool, HT40)
    "atheros": HardwareProfile(
        name="atheros",
        chipset="ar9580",
        wire_format="",
        n_tx=3,
        n_rx=3,
        carrier_hz=5.19e9,
        channel=38,
        bandwidth_mhz=40,
        frame_subcarriers=_HT40,
        occupied=_HT40,
        zero_unoccupied=True,
        bits=10,
        target_rms=120.0,
        snr_db=(22.0, 38.0),
        timing_offset_ns=(40.0, 200.0),
        timing_jitter_ns=6.0,
        agc_step_db=0.5,
        agc_drift_db=0.7,
        loss=(0.0, 0.08),
        jitter_s=0.0007,
        ripple_db=1.5,
        antenna_spacing_m=0.029,
        chain_skew_ns=1.5,
        sfo_ppm=1.0,
        cfo_residual_hz=1000.0,
    ),
}

#: profiles the training, validation, same-layout and cross-layout splits draw from
TRAIN_HARDWARE: tuple[str, ...] = ("esp32", "intel5300", "nexmon")
#: the profile only the cross-hardware split uses
HELD_OUT_HARDWARE = "atheros"


def link_snr_db(
    rng: np.random.Generator, profile: HardwareProfile, distance_m: npt.ArrayLike
) -> npt.NDArray[np.float64]:
    """Per-window SNR (n,) for links of length ``distance_m`` (n,): falls with distance.

    A draw inside the profile's ``snr_db`` range (its value at ``SNR_REFERENCE_M``), minus
    the path loss beyond that distance with an exponent from ``PATH_LOSS_EXPONENT``, kept
    within ``SNR_LIMITS_DB``.
    """
    d = np.maximum(np.asarray(distance_m, dtype=np.float64).reshape(-1), 0.3)  # (n,)
    base = rng.uniform(*profile.snr_db, d.shape[0])  # (n,)
    exponent = rng.uniform(*PATH_LOSS_EXPONENT, d.shape[0])  # (n,)
    snr = base - 10.0 * exponent * np.log10(d / SNR_REFERENCE_M)
    out: npt.NDArray[np.float64] = np.clip(snr, *SNR_LIMITS_DB)
    return out


def with_tx(profile: HardwareProfile, n_tx: int) -> HardwareProfile:
    """The profile receiving from ``n_tx`` transmit antennas."""
    return replace(profile, n_tx=n_tx)


def tx_choices(profile: HardwareProfile) -> tuple[int, ...]:
    """Transmit antenna counts training windows of this profile draw from."""
    return profile.tx_streams or (profile.n_tx,)


#: other names of profiles (the runtime config names the Nexmon chip)
ALIASES = {"nexmon43455c0": "nexmon", "bcm43455c0": "nexmon", "iwl5300": "intel5300"}


def get_profile(name: str) -> HardwareProfile:
    """The profile called ``name`` or an alias (SimulationError naming the known ones)."""
    try:
        return PROFILES[ALIASES.get(name, name)]
    except KeyError:
        known = ", ".join(sorted(PROFILES))
        raise SimulationError(f"unknown hardware profile {name!r} (known: {known})") from None


@lru_cache(maxsize=16)
def training_subcarriers(name: str, n_out: int = N_CANONICAL) -> IntArray:
    """The profile's subcarriers nearest the canonical grid's points, int16 (<= n_out,).

    Training windows compute the channel only there. The canonical grid spans the
    subcarriers ``window_arrays`` keeps from a full frame of this hardware, so the
    selection has the same span, and the canonical resampling of the selection differs
    from that of the full frame by at most half a subcarrier of interpolation.
    """
    profile = get_profile(name)
    occupied_in_frame = np.isin(profile.frame_subcarriers, profile.occupied)
    keep = kept_mask(profile.frame_subcarriers, profile.bandwidth_mhz) & occupied_in_frame
    kept = profile.frame_subcarriers[keep].astype(np.int64)  # (K,) ascending
    if kept.size <= n_out:
        return kept.astype(np.int16)
    targets = np.linspace(kept[0], kept[-1], n_out)  # (n_out,)
    nearest = np.abs(kept[None, :] - targets[:, None]).argmin(axis=1)  # (n_out,)
    chosen = np.unique(kept[nearest])
    return chosen.astype(np.int16)


@lru_cache(maxsize=16)
def canonical_offsets(name: str, n_out: int = N_CANONICAL) -> npt.NDArray[np.float64]:
    """Positions (n_out,) of the canonical grid points in subcarrier-index units.

    The same points ``window_arrays`` interpolates a full frame of this hardware onto:
    evenly spaced from the lowest to the highest subcarrier it keeps. The training fast
    path computes the channel right there (fractional indices are just frequencies).
    """
    profile = get_profile(name)
    occupied_in_frame = np.isin(profile.frame_subcarriers, profile.occupied)
    keep = kept_mask(profile.frame_subcarriers, profile.bandwidth_mhz) & occupied_in_frame
    kept = profile.frame_subcarriers[keep].astype(np.float64)
    centre = 0.5 * (kept[0] + kept[-1])
    out: npt.NDArray[np.float64] = centre + 0.5 * (kept[-1] - kept[0]) * canonical_positions(
        n_out
    ).astype(np.float64)
    return out
