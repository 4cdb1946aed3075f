"""What moves in a router's channel: one cleaning fit per packet and receiver, then minus its mean.

A receiver puts the same per-packet carrier phase, timing slope and gain on every one of
its antennas. Removing them link by link (``sanitize_phase``) also removes the body
echo's own constant and linear phase, and breaks the phase coherence between antennas
that angle of arrival needs. Here one fit per packet is shared by all links of the
router, so the echo survives on multi-antenna links and the links stay coherent (up to
fixed per-chain offsets, which ``invispose.localise`` calibrates):

1. reference: the newest valid packet, later the window mean of the aligned packets;
2. per packet, the phase step between neighbouring subcarriers of ``h · conj(ref)``
   summed over links and subcarriers gives the timing slope, removed from every link;
3. per packet, the complex least-squares scalar ``<h, ref> / <ref, ref>`` removes the
   common phase and the gain; where the hardware reports its gain, the gain is divided
   out instead and the scalar only sets the phase (on a 1×1 link a fitted gain takes the
   echo's in-phase part with it);
4. static = the complex window mean of the aligned packets; dynamic = aligned − static;
   both divided by the static part's RMS over links and subcarriers (one scale per
   router window, so relative link strengths and white noise stay as they are).

``window_dynamic`` is the only implementation: the runtime ``Windower``, the
simulator's exact receiver path and the training fast path all call it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from invispose.schemas import ComplexArray, FloatArray

FIT_PASSES = 2  # align to one packet, then to the mean of the aligned packets


@dataclass(slots=True)
class DynamicWindow:
    """A router window split into what stays and what moves."""

    dynamic: ComplexArray  # complex64 (..., L, T, S) aligned CSI minus its window mean, /scale
    static: ComplexArray  # complex64 (..., L, S) window mean of the aligned CSI, /scale
    scale: FloatArray  # float32 (...) RMS of the static part before normalising


def _fit(
    h: ComplexArray, ref: ComplexArray, dx: float, gain_known: bool, valid: npt.NDArray[np.bool_]
) -> ComplexArray:
    """Packets h (..., T, L, S) aligned to ref (..., 1, L, S): slope, phase and gain removed."""
    r = h * np.conj(ref)  # (..., T, L, S)
    step = np.einsum("...ls,...ls->...", r[..., 1:], np.conj(r[..., :-1]))  # (..., T)
    slope = np.angle(step).astype(np.float32) / np.float32(dx)  # (..., T) rad per position unit
    n_sub = h.shape[-1]
    x = (np.arange(n_sub, dtype=np.float32) - (n_sub - 1) / 2.0) * np.float32(dx)  # (S,)
    angle = -slope[..., None] * x  # (..., T, S)
    rot = np.empty(angle.shape, dtype=np.complex64)
    rot.real, rot.imag = np.cos(angle), np.sin(angle)
    aligned = h * rot[..., None, :]  # (..., T, L, S)
    a = np.einsum("...ls,...ls->...", aligned, np.conj(ref))  # (..., T)
    a /= np.maximum(np.sum(np.abs(ref) ** 2, axis=(-2, -1)), 1e-30)
    if gain_known:
        a /= np.maximum(np.abs(a), 1e-30)
    a = np.where(valid & (np.abs(a) > 0), a, np.complex64(1.0)).astype(np.complex64)
    out: ComplexArray = (aligned / a[..., None, None]).astype(np.complex64, copy=False)
    return out


def window_dynamic(
    csi: npt.ArrayLike,
    valid: npt.ArrayLike,
    *,
    spacing: float = 1.0,
    gain_db: npt.ArrayLike | None = None,
) -> DynamicWindow:
    """Split canonical CSI (..., T, L, S) of one router into dynamic and static parts.

    ``csi``: complex, packets on a uniform subcarrier grid (``spacing`` apart, in any unit:
    the slope is fitted per unit), zero where ``valid`` (..., T) is False. ``gain_db``
    (..., T): the receiver gain the hardware reported per packet (divided out instead of
    fitted), or None. Returns dynamic (..., L, T, S) and static (..., L, S), see the module
    docstring; invalid packets come out zero. Windows with no valid packet are all zero.
    """
    h = np.asarray(csi).astype(np.complex64, copy=True)  # (..., T, L, S)
    if h.ndim < 3:
        raise ValueError(f"csi needs shape (..., T, L, S), got {h.shape}")
    ok = np.asarray(valid, dtype=bool)  # (..., T)
    if ok.shape != h.shape[:-2]:
        raise ValueError(f"valid has shape {ok.shape}, expected {h.shape[:-2]}")
    if h.shape[-1] < 2:
        raise ValueError("need at least two subcarriers")
    gain_known = gain_db is not None
    if gain_db is not None:
        g = np.asarray(gain_db, dtype=np.float32)  # (..., T)
        h *= (10.0 ** (-g / 20.0)).astype(np.float32)[..., None, None]
    h[~ok] = 0
    n_t = h.shape[-3]
    # newest valid packet of each window (the last one when none is valid: all zero)
    newest = n_t - 1 - np.argmax(ok[..., ::-1], axis=-1)  # (...)
    ref = np.take_along_axis(h, newest[..., None, None, None], axis=-3)  # (..., 1, L, S)
    weight = ok.astype(np.float32)[..., None, None]  # (..., T, 1, 1)
    n_valid = np.maximum(weight.sum(axis=-3, keepdims=True), 1.0)  # (..., 1, 1, 1)
    aligned = h
    for _ in range(FIT_PASSES):
        aligned = _fit(h, ref, spacing, gain_known, ok)  # (..., T, L, S)
        aligned *= weight
        ref = aligned.sum(axis=-3, keepdims=True) / n_valid  # (..., 1, L, S)
    static = ref  # (..., 1, L, S): the mean of the last alignment
    scale = np.sqrt(np.mean(np.abs(static) ** 2, axis=(-3, -2, -1)))  # (...)
    safe = np.where(scale > 0, scale, 1.0).astype(np.float32)[..., None, None, None]
    dynamic = (aligned - static) * weight / safe  # (..., T, L, S)
    return DynamicWindow(
        dynamic=np.ascontiguousarray(np.swapaxes(dynamic, -3, -2)).astype(np.complex64),
        static=(static[..., 0, :, :] / safe[..., 0, :, :]).astype(np.complex64),
        scale=scale.astype(np.float32),
    )
