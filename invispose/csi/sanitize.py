"""Phase sanitization and amplitude normalisation of CSI, vectorised over any leading dims.

Raw CSI phase carries, per packet, a random offset (carrier phase, shared by the antennas
of one receiver) and a linear slope over subcarriers (timing offset); raw amplitude is
scaled per packet by automatic gain control. These functions remove what does not come
from the room.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from invispose.schemas import ComplexArray, FloatArray


def sanitize_phase(csi: npt.ArrayLike, positions: npt.ArrayLike | None = None) -> FloatArray:
    """Unwrapped phase minus its least-squares line over subcarriers, per packet and link.

    ``csi`` is complex (..., S); ``positions`` (S,) are the subcarrier positions the line
    is fitted against (subcarrier indices, or ``canonical_positions``; default 0..S-1).
    Returns float32 (..., S): zero mean and zero slope along S for every leading index.
    Unwrapping assumes neighbouring subcarriers differ by less than pi; ``window_arrays``
    removes the bulk slope at the hardware's resolution before calling this.
    """
    values = np.asarray(csi)  # (..., S)
    n_sub = values.shape[-1]
    if positions is None:
        x = np.arange(n_sub, dtype=np.float32)  # (S,)
    else:
        x = np.asarray(positions, dtype=np.float32)  # (S,)
        if x.shape != (n_sub,):
            raise ValueError(f"positions has shape {x.shape}, expected ({n_sub},)")
    if n_sub < 2:
        return np.zeros(values.shape, dtype=np.float32)
    # unwrapped phase = first phase + running sum of neighbour phase steps in (-pi, pi]:
    # the same as np.unwrap of np.angle, without its temporaries
    h = values.astype(np.complex64, copy=False)  # (..., S)
    steps = np.angle(h[..., 1:] * np.conj(h[..., :-1]))  # (..., S-1)
    phase = np.empty(h.shape, dtype=np.float32)  # (..., S)
    phase[..., 0] = np.angle(h[..., 0])
    np.cumsum(steps, axis=-1, out=phase[..., 1:])
    phase[..., 1:] += phase[..., :1]
    # closed-form least squares: with centred x, slope = <x, phi> / <x, x>, offset = mean
    xc = x - x.mean()  # (S,)
    denom = float(np.dot(xc, xc))
    mean = phase.mean(axis=-1, keepdims=True)  # (..., 1)
    slope = (phase @ xc)[..., None] / np.float32(max(denom, 1e-30))  # (..., 1)
    out: FloatArray = (phase - mean - slope * xc).astype(np.float32, copy=False)  # (..., S)
    return out


def conjugate_product(csi: npt.ArrayLike, ref_rx: int = 0) -> ComplexArray:
    """Each receive antenna's CSI times the conjugate of a reference antenna's.

    ``csi`` is complex (..., n_rx, S); returns complex64 (..., n_rx, S). Offsets and
    slopes common to one receiver's antennas (carrier phase, timing) cancel; the
    reference antenna's own row becomes its power ``|h|^2``.
    """
    values = np.asarray(csi).astype(np.complex64, copy=False)  # (..., n_rx, S)
    if values.ndim < 2:
        raise ValueError(f"csi needs shape (..., n_rx, S), got {values.shape}")
    n_rx = values.shape[-2]
    if not -n_rx <= ref_rx < n_rx:
        raise ValueError(f"ref_rx {ref_rx} out of range for {n_rx} receive antennas")
    ref_idx = ref_rx % n_rx
    ref = values[..., ref_idx : ref_idx + 1, :]  # (..., 1, S)
    return (values * np.conj(ref)).astype(np.complex64, copy=False)  # (..., n_rx, S)


def relative_phasor(csi: npt.ArrayLike, link_axis: int = -2) -> ComplexArray:
    """Each link against the first link, per packet and subcarrier, as a unit phasor.

    ``csi`` is complex with links along ``link_axis`` (default (..., L, S)); returns
    complex64 of the same shape: ``h_l * conj(h_0)`` divided by its magnitude (zero where
    either is zero, e.g. a packet that never arrived). The carrier phase and timing slope
    a receiver puts on every antenna alike cancel; what remains is the antennas' geometry
    (angle of arrival and departure) plus each chain's fixed phase. Link 0 is 1, as is a
    one-link router's only link.
    """
    values = np.asarray(csi).astype(np.complex64, copy=False)
    if values.ndim < 2:
        raise ValueError(f"csi needs shape (..., L, S), got {values.shape}")
    links = np.moveaxis(values, link_axis, 0)  # (L, ...) view
    product = links * np.conj(links[:1])  # (L, ...)
    size = np.abs(product)
    out = np.divide(product, size, out=np.zeros_like(product), where=size > 0)
    out[0] = np.where(size[0] > 0, np.complex64(1.0), np.complex64(0.0))  # exactly real
    return np.moveaxis(out, 0, link_axis)


def center_relative_phasors(phasors: npt.ArrayLike, valid: npt.ArrayLike) -> FloatArray:
    """Relative phase from unit phasors (..., L, T, S), minus its circular mean over the
    valid steps (..., T): float32 (..., L, T, S) in (-pi, pi].

    A chain's fixed phase is a constant of the hardware, not of the room: removing each
    link's and subcarrier's window mean leaves how the relative phase moved, centred on
    zero. Steps that are not valid come out zero.
    """
    z = np.asarray(phasors).astype(np.complex64, copy=False)  # (..., L, T, S)
    if z.ndim < 3:
        raise ValueError(f"relative phase needs shape (..., L, T, S), got {z.shape}")
    steps = np.asarray(valid, dtype=bool)  # (..., T)
    if steps.shape[-1:] != z.shape[-2:-1]:
        raise ValueError(f"valid has shape {steps.shape}, expected (..., {z.shape[-2]})")
    mask = steps[..., None, :, None]  # (..., 1, T, 1)
    moved = np.where(mask, z, np.complex64(0.0))  # (..., L, T, S)
    moved *= np.conj(moved.sum(axis=-2, keepdims=True))  # times conj(window mean direction)
    angle = np.arctan2(moved.imag, moved.real)  # float32
    return np.where(mask, angle, np.float32(0.0))  # signed zeros could give ±pi there


def normalize_amplitude(amplitude: npt.ArrayLike) -> FloatArray:
    """Each packet's amplitude divided by its RMS over links and subcarriers.

    ``amplitude`` is float (..., L, S); returns float32 (..., L, S). One gain per packet
    keeps the ratios between links; an all-zero packet stays all zero.
    """
    values = np.asarray(amplitude, dtype=np.float32)  # (..., L, S)
    if values.ndim < 2:
        raise ValueError(f"amplitude needs shape (..., L, S), got {values.shape}")
    rms = np.sqrt(np.mean(np.square(values), axis=(-2, -1), keepdims=True))  # (..., 1, 1)
    safe = np.where(rms > 0, rms, np.float32(1.0))  # (..., 1, 1)
    return (values / safe).astype(np.float32, copy=False)


def normalize_window_amplitude(amplitude: npt.ArrayLike) -> FloatArray:
    """Each window's amplitude divided by its RMS over links, packets and subcarriers.

    ``amplitude`` is float (..., L, T, S); returns float32 (..., L, T, S). Time steps
    that are all zero (gaps of the time grid) are left out of the RMS and stay zero.
    One gain per window keeps what a per-packet gain would erase: changes that are
    common to the whole band, such as a person blocking the line of sight; AGC steps
    inside a window remain, as they do on real hardware.
    """
    values = np.asarray(amplitude, dtype=np.float32)  # (..., L, T, S)
    if values.ndim < 3:
        raise ValueError(f"amplitude needs shape (..., L, T, S), got {values.shape}")
    n_links, n_sub = values.shape[-3], values.shape[-1]
    power = np.square(values)  # (..., L, T, S)
    step_power = power.sum(axis=(-3, -1))  # (..., T)
    n_valid = np.count_nonzero(step_power > 0, axis=-1)  # (...)
    mean_power = step_power.sum(axis=-1) / np.maximum(n_valid * n_links * n_sub, 1)  # (...)
    rms = np.sqrt(mean_power)[..., None, None, None]  # (..., 1, 1, 1)
    safe = np.where(rms > 0, rms, np.float32(1.0))
    return (values / safe).astype(np.float32, copy=False)
