"""The canonical subcarrier grid: any hardware's CSI resampled onto N_CANONICAL points.

Every CSI source reports a different set of subcarriers: an ESP32 the 64 FFT bins of a
20 MHz channel with zeros in the null and guard bins, an Intel 5300 30 grouped indices,
Nexmon all 256 bins of an 80 MHz channel (nulls and pilots included). ``to_canonical``
keeps the data subcarriers the input really carries and interpolates them onto
``n_out`` points evenly spaced from the lowest to the highest kept index, so the model
always sees the same (..., S) layout whatever the hardware.

Complex interpolation and the phase slope
-----------------------------------------
CSI phase carries a linear slope over frequency (the receiver's timing offset). Linear
interpolation of raw complex values between two bins whose phases differ by ``d``
shortens the chord (amplitude dips by ``cos(d/2)`` midway) and bends the phase, and it
gets worse the steeper the slope. ``to_canonical`` therefore first estimates each
packet's mean phase step per subcarrier index from the products ``h[k+1] * conj(h[k])``
(no unwrapping, so noise cannot cause 2*pi slips), removes that linear phase, interpolates
the now slowly varying real and imaginary parts, and puts the same linear phase back on
the output positions. The slope and offset therefore survive exactly; only the residual
(multipath ripple) is interpolated, and it is smooth on the scale of a few subcarriers.
The estimate is unambiguous while the phase step between neighbouring kept subcarriers
stays under pi (a timing offset under 1.6 us at 312.5 kHz spacing, 0.8 us for Intel's
two-index groups).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt

from invispose.schemas import ComplexArray, FloatArray, IntArray

N_CANONICAL = 32
SUBCARRIER_SPACING_HZ = 312_500.0  # 802.11n/ac OFDM subcarrier spacing
SPEED_OF_LIGHT_MPS = 299_792_458.0
SUBCHANNEL_DROP_DB = 20.0  # a 20 MHz sub-channel this far below the strongest is empty
BIN_DROP_DB = 30.0  # a bin this far below its sub-channel's median carries no signal

# 802.11n/ac (HT/VHT) layout per bandwidth: highest occupied index, DC nulls, pilots.
# 160 MHz is two 80 MHz segments: it also nulls the 3 bins at each segment's centre.
_EDGE = {20: 28, 40: 58, 80: 122, 160: 250}
_DC_HALF = {20: 0, 40: 1, 80: 1, 160: 5}
_PILOTS = {
    20: (7, 21),
    40: (11, 25, 53),
    80: (11, 39, 75, 103),
    160: (25, 53, 89, 117, 139, 167, 203, 231),
}


@lru_cache(maxsize=8)
def _occupied(bandwidth_mhz: int) -> tuple[int, ...]:
    """Occupied (data + pilot) subcarrier indices of one bandwidth, ascending."""
    if bandwidth_mhz not in _EDGE:
        raise ValueError(f"unsupported bandwidth {bandwidth_mhz} MHz (20, 40, 80 or 160)")
    edge, dc = _EDGE[bandwidth_mhz], _DC_HALF[bandwidth_mhz]
    idx = np.arange(-edge, edge + 1)  # (2*edge+1,)
    keep = np.abs(idx) > dc
    if bandwidth_mhz == 160:
        keep &= np.abs(np.abs(idx) - 128) > 1  # segment-centre nulls at +-127..129
    return tuple(int(i) for i in idx[keep])


@lru_cache(maxsize=8)
def _data(bandwidth_mhz: int) -> tuple[int, ...]:
    occupied = _occupied(bandwidth_mhz)  # validates the bandwidth
    pilots = set(_PILOTS[bandwidth_mhz]) | {-p for p in _PILOTS[bandwidth_mhz]}
    return tuple(i for i in occupied if i not in pilots)


def data_subcarriers(bandwidth_mhz: int) -> IntArray:
    """802.11n/ac data subcarrier indices (DC, guards and pilots removed), ascending.

    20 MHz: 52, 40 MHz: 108, 80 MHz: 234, 160 MHz: 468 indices.
    """
    return np.asarray(_data(bandwidth_mhz), dtype=np.int16)  # (n_data,)


def canonical_positions(n_out: int = N_CANONICAL) -> FloatArray:
    """Positions of the canonical points, evenly spaced over the occupied band, in [-1, 1]."""
    return _positions(int(n_out)).copy()


@lru_cache(maxsize=16)
def _positions(n_out: int) -> FloatArray:
    if n_out < 2:
        raise ValueError(f"n_out must be at least 2, got {n_out}")
    pos = np.linspace(-1.0, 1.0, n_out, dtype=np.float32)  # (n_out,)
    pos.setflags(write=False)  # cached: shared by every caller
    return pos


@dataclass(frozen=True)
class _Layout:
    """What the index set alone decides (cached per subcarrier set and bandwidth)."""

    allowed: npt.NDArray[np.bool_]  # (n_sub,) data (dense grid) or occupied (grouped) index
    block: npt.NDArray[np.intp]  # (n_sub,) 20 MHz sub-channel of each index


@lru_cache(maxsize=64)
def _layout(sub_bytes: bytes, bandwidth_mhz: int) -> _Layout:
    sub = np.frombuffer(sub_bytes, dtype=np.int64)  # (n_sub,)
    dense = sub.size > 1 and bool(np.all(np.diff(sub) == 1))
    allowed = _data(bandwidth_mhz) if dense else _occupied(bandwidth_mhz)
    n_blocks = max(bandwidth_mhz // 20, 1)
    block = np.clip((sub + 32 * n_blocks) // 64, 0, n_blocks - 1)  # 64-bin sub-channels
    layout = _Layout(np.isin(sub, np.asarray(allowed, dtype=np.int64)), block.astype(np.intp))
    layout.allowed.setflags(write=False)  # cached: shared by every caller
    layout.block.setflags(write=False)
    return layout


def kept_mask(
    subcarriers: npt.ArrayLike, bandwidth_mhz: int, csi: npt.ArrayLike | None = None
) -> npt.NDArray[np.bool_]:
    """Which input subcarriers ``to_canonical`` keeps.

    By layout: a full FFT grid (consecutive indices: ESP32, Nexmon) keeps the data
    subcarriers; a sparse, grouped set (Intel 5300's 30 groups) keeps every occupied
    index it reports, pilot positions included, since the NIC's estimate there is as
    good as any. By content, when ``csi`` (..., n_sub) is given: only subcarriers that
    carry signal in the batch are present. A transmission may occupy less than the
    channel (a 20 MHz or non-HT duplicate frame received on an 80 MHz Nexmon channel),
    and unfilled bins are zero (ESP32 nulls, an LLTF buffer's +-27/28). So per 20 MHz
    sub-channel (64 bins) the median RMS of its bins must be within
    ``SUBCHANNEL_DROP_DB`` of the strongest sub-channel's, and within an occupied
    sub-channel a bin must be within ``BIN_DROP_DB`` of that median (this drops zero
    bins and a narrow transmission's own nulls and guards, and keeps genuine fades).
    When that would leave fewer than two subcarriers (an all-zero input) the layout
    rule alone decides, and the input maps to zeros.
    """
    sub = np.asarray(subcarriers, dtype=np.int64)  # (n_sub,)
    if sub.ndim != 1:
        raise ValueError(f"subcarriers must be 1-D, got shape {sub.shape}")
    layout = _layout(sub.tobytes(), int(bandwidth_mhz))
    keep = layout.allowed.copy()  # (n_sub,)
    if csi is None:
        return keep
    values = np.asarray(csi)  # (..., n_sub)
    if values.shape[-1] != sub.size:
        raise ValueError(
            f"csi has {values.shape[-1]} subcarriers but {sub.size} indices were given"
        )
    rows = values.reshape(-1, sub.size)  # (P, n_sub)
    if rows.shape[0] == 0:
        return keep
    power = np.mean(rows.real**2 + rows.imag**2, axis=0)  # (n_sub,) mean |h|^2
    medians = np.zeros(int(layout.block.max()) + 1)  # (B,) median power per sub-channel
    for b in np.unique(layout.block[keep]):  # at most 8 sub-channels
        in_block = np.sort(power[keep & (layout.block == b)])
        medians[b] = in_block[in_block.size // 2]
    occupied = medians >= medians.max() * 10 ** (-SUBCHANNEL_DROP_DB / 10)  # (B,)
    floor = medians[layout.block] * 10 ** (-BIN_DROP_DB / 10)  # (n_sub,)
    carries = occupied[layout.block] & (power >= floor) & (power > 0)  # (n_sub,)
    if np.count_nonzero(keep & carries) >= 2:
        keep &= carries
    return keep


@dataclass(frozen=True)
class _Plan:
    """Interpolation from kept indices to the canonical grid (cached per index set)."""

    pair_lo: npt.NDArray[np.intp]  # (P,) neighbour pairs at the most common spacing
    pair_hi: npt.NDArray[np.intp]  # (P,)
    step: float  # that spacing, in index units
    j: npt.NDArray[np.intp]  # (n_out,) left neighbour of each output point
    w: FloatArray  # (n_out,) weight of the right neighbour
    x_left: FloatArray  # (n_out,) neighbour positions relative to the band centre
    x_right: FloatArray  # (n_out,)
    x_out: FloatArray  # (n_out,) output positions relative to the band centre


@lru_cache(maxsize=256)
def _plan(kept_bytes: bytes, n_out: int) -> _Plan:
    x_in = np.frombuffer(kept_bytes, dtype=np.int64).astype(np.float64)  # (K,) ascending
    gaps = np.diff(x_in)  # (K-1,)
    spacings, counts = np.unique(gaps, return_counts=True)
    step = float(spacings[np.argmax(counts)])
    pair_lo = np.flatnonzero(gaps == step)  # (P,)
    centre = 0.5 * (x_in[0] + x_in[-1])
    pos = _positions(n_out).astype(np.float64)  # (n_out,)
    x_target = centre + 0.5 * (x_in[-1] - x_in[0]) * pos  # (n_out,) index units
    j = np.clip(np.searchsorted(x_in, x_target, side="right") - 1, 0, x_in.size - 2)
    w = (x_target - x_in[j]) / (x_in[j + 1] - x_in[j])  # (n_out,)
    f32 = np.float32
    plan = _Plan(
        pair_lo=pair_lo,
        pair_hi=pair_lo + 1,
        step=step,
        j=j.astype(np.intp),
        w=w.astype(f32),
        x_left=(x_in[j] - centre).astype(f32),
        x_right=(x_in[j + 1] - centre).astype(f32),
        x_out=(x_target - centre).astype(f32),
    )
    for field in (plan.pair_lo, plan.pair_hi, plan.j, plan.w, plan.x_left, plan.x_right):
        field.setflags(write=False)  # cached: shared by every caller
    plan.x_out.setflags(write=False)
    return plan


def canonical_frequencies_hz(
    kept_indices: npt.ArrayLike, n_out: int = N_CANONICAL
) -> FloatArray:
    """Offsets from the carrier (n_out,) in Hz of the canonical points of a kept index set.

    The points ``to_canonical`` interpolates onto: evenly spaced from the lowest to the
    highest kept subcarrier index (``kept_indices`` ascending, 312.5 kHz per index).
    """
    kept = np.asarray(kept_indices, dtype=np.float64)  # (K,)
    if kept.ndim != 1 or kept.size < 2:
        raise ValueError(f"need at least two kept subcarrier indices, got {kept.shape}")
    centre = 0.5 * (kept[0] + kept[-1])
    pos = _positions(int(n_out)).astype(np.float64)  # (n_out,)
    index = centre + 0.5 * (kept[-1] - kept[0]) * pos  # (n_out,) index units from DC
    out: FloatArray = (index * SUBCARRIER_SPACING_HZ).astype(np.float32)
    return out


def _cis(phase: npt.NDArray[np.float32]) -> ComplexArray:
    """exp(1j * phase) as complex64, via cos and sin (cheaper than a complex exp)."""
    out = np.empty(phase.shape, dtype=np.complex64)
    out.real = np.cos(phase)
    out.imag = np.sin(phase)
    return out


def to_canonical(
    csi: npt.ArrayLike,
    subcarriers: npt.ArrayLike,
    bandwidth_mhz: int,
    n_out: int = N_CANONICAL,
) -> ComplexArray:
    """Resample CSI (..., n_sub) onto ``n_out`` points spanning its kept subcarriers.

    Returns complex64 (..., n_out). Needs at least two kept subcarriers.
    """
    out, slope, x_out = _derotated_canonical(csi, subcarriers, bandwidth_mhz, n_out)
    ramp = _cis(slope[..., None] * x_out)  # (..., n_out) the linear phase put back
    full: ComplexArray = out * ramp  # (..., n_out)
    return full


def _derotated_canonical(
    csi: npt.ArrayLike,
    subcarriers: npt.ArrayLike,
    bandwidth_mhz: int,
    n_out: int,
    keep: npt.NDArray[np.bool_] | None = None,
    common_slope: bool = False,
) -> tuple[ComplexArray, npt.NDArray[np.float32], FloatArray]:
    """Canonical CSI with its linear phase ramp removed, the ramp's slope and positions.

    Returns (canonical complex64 (..., n_out) without the ramp, slope float32 (...)
    radians per subcarrier index, output positions float32 (n_out,) in index units
    measured from the band's middle). The full CSI is ``out * exp(1j * slope * x_out)``.
    ``keep`` (n_sub,) fixes the kept subcarriers (default: ``kept_mask`` of this batch).
    ``common_slope``: one slope per packet for all links along axis -2 (..., L, n_sub), as
    one receiver's timing puts it on all its antennas; the links stay phase-coherent.
    """
    values = np.asarray(csi).astype(np.complex64, copy=False)  # (..., n_sub)
    sub = np.asarray(subcarriers, dtype=np.int64)  # (n_sub,)
    if keep is None:
        keep = kept_mask(sub, bandwidth_mhz, values)  # (n_sub,)
    kept = np.flatnonzero(keep)  # (K,)
    if kept.size < 2:
        raise ValueError(
            f"only {kept.size} usable data subcarriers at {bandwidth_mhz} MHz; need at least 2"
        )
    plan = _plan(sub[kept].tobytes(), int(n_out))
    # mean phase step per index from neighbour products at the most common spacing
    lo = np.take(values, kept[plan.pair_lo], axis=-1)  # (..., P)
    hi = np.take(values, kept[plan.pair_hi], axis=-1)  # (..., P)
    lo = np.conj(lo, out=lo)
    step_sum = np.einsum("...p,...p->...", hi, lo)  # (...,) sum of h[k+1] conj(h[k])
    if common_slope:
        if step_sum.ndim < 1:
            raise ValueError("common_slope needs csi shaped (..., L, n_sub)")
        step_sum = np.broadcast_to(step_sum.sum(axis=-1, keepdims=True), step_sum.shape)
    slope = (np.angle(step_sum) / np.float32(plan.step)).astype(np.float32)  # (...,)
    # derotate only the two neighbours each output point interpolates between
    s = slope[..., None]  # (..., 1)
    left = np.take(values, kept[plan.j], axis=-1)  # (..., n_out)
    left *= _cis(-s * plan.x_left)
    left *= 1 - plan.w
    right = np.take(values, kept[plan.j + 1], axis=-1)  # (..., n_out)
    right *= _cis(-s * plan.x_right)
    right *= plan.w
    left += right
    return left, slope, plan.x_out
