"""What moves in a router's channel: one cleaning fit per packet and receiver, then minus its mean.

A receiver puts the same per-packet carrier phase, timing slope and gain on every one of
its antennas; the residual carrier offset left after its correction turns the phase
between the training symbols each transmit stream is measured on (HT-LTFs, 4 µs apart),
so each transmit stream also gets a phase of its own per packet (0.04-0.08 rad on an
Intel 5300: -28 to -22 dB of the static channel, above a still person's echo).
Removing them link by link (``sanitize_phase``) also removes the body echo's own constant
and linear phase, and breaks the phase coherence between antennas that angle of arrival
needs. Here one fit per packet is shared by all links of the router (a phase per
transmit stream, one slope and gain for all), so the echo survives on multi-antenna
links and the links stay coherent (up to fixed per-chain offsets, which
``invispose.localise`` calibrates):

1. reference: the newest valid packet, later the window mean of the aligned packets;
2. per packet, the phase step between neighbouring subcarriers of ``h · conj(ref)``
   summed over links and subcarriers gives the timing slope, removed from every link;
3. per packet, the least-squares gain ``Σ_a |<h_a, ref_a>| / <ref, ref>`` removes the
   gain, and the phase of ``<h_a, ref_a>`` per transmit stream a (over its receive
   antennas and subcarriers) removes the common phase and the stream's own turn; where
   the hardware reports its gain, the gain is divided out instead and only the phases are
   fitted (on a 1×1 link a fitted gain takes the echo's in-phase part with it);
4. the window's timing frame: one slope over subcarriers, for all links, that leaves the
   static part's mean phase step at zero (absolute delays are unknown on real receivers:
   CSI is referenced to where packet detection locked);
5. static = the complex window mean of the aligned packets; dynamic = aligned − static;
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


def _ramp(step: FloatArray, n_sub: int) -> ComplexArray:
    """exp(j · step · x) (..., S) for phase steps (...) per subcarrier, x centred on the band."""
    x = np.arange(n_sub, dtype=np.float32) - (n_sub - 1) / 2.0  # (S,)
    angle = step[..., None] * x  # (..., S)
    out = np.empty(angle.shape, dtype=np.complex64)
    out.real, out.imag = np.cos(angle), np.sin(angle)
    return out


def _fit(
    h: ComplexArray, ref: ComplexArray, gain_known: bool, valid: npt.NDArray[np.bool_],
    n_tx: int,
) -> ComplexArray:
    """Packets h (..., T, L, S) aligned to ref (..., 1, L, S): slope, phases and gain removed.

    Links are tx-major: stream a holds links a·n_rx .. (a+1)·n_rx − 1.
    """
    r = h * np.conj(ref)  # (..., T, L, S)
    step = np.einsum("...ls,...ls->...", r[..., 1:], np.conj(r[..., :-1]))  # (..., T)
    slope = np.angle(step).astype(np.float32)  # (..., T) radians per subcarrier
    aligned = h * _ramp(-slope, h.shape[-1])[..., None, :]  # (..., T, L, S)
    per_link = np.einsum("...ls,...ls->...l", aligned, np.conj(ref))  # (..., T, L)
    per_stream = per_link.reshape(*per_link.shape[:-1], n_tx, -1).sum(axis=-1)  # (..., T, A)
    size = np.abs(per_stream)  # (..., T, A)
    if gain_known:
        gain = np.ones(size.shape[:-1], np.float32)  # (..., T)
    else:
        gain = size.sum(axis=-1) / np.maximum(np.sum(np.abs(ref) ** 2, axis=(-2, -1)), 1e-30)
    a = gain[..., None] * per_stream / np.maximum(size, 1e-30)  # (..., T, A)
    usable = (valid & (gain > 0))[..., None] & (size > 0)  # (..., T, A)
    a = np.where(usable, a, np.complex64(1.0)).astype(np.complex64)
    per_link_a = np.repeat(a, per_link.shape[-1] // n_tx, axis=-1)  # (..., T, L)
    out: ComplexArray = (aligned / per_link_a[..., None]).astype(np.complex64, copy=False)
    return out


def window_dynamic(
    csi: npt.ArrayLike,
    valid: npt.ArrayLike,
    *,
    gain_db: npt.ArrayLike | None = None,
    n_tx: int = 1,
) -> DynamicWindow:
    """Split canonical CSI (..., T, L, S) of one router into dynamic and static parts.

    ``csi``: complex, packets on a uniform subcarrier grid, zero where ``valid`` (..., T)
    is False. ``gain_db`` (..., T): the receiver gain the hardware reported per packet
    (divided out instead of fitted), or None. ``n_tx``: transmit streams, links tx-major
    (L = n_tx · n_rx); each gets its own per-packet phase. Returns dynamic (..., L, T, S)
    and static (..., L, S) in the window's timing frame (see the module docstring);
    invalid packets come out zero. Windows with no valid packet are all zero.
    """
    h = np.asarray(csi).astype(np.complex64, copy=True)  # (..., T, L, S)
    if h.ndim < 3:
        raise ValueError(f"csi needs shape (..., T, L, S), got {h.shape}")
    ok = np.asarray(valid, dtype=bool)  # (..., T)
    if ok.shape != h.shape[:-2]:
        raise ValueError(f"valid has shape {ok.shape}, expected {h.shape[:-2]}")
    if h.shape[-1] < 2:
        raise ValueError("need at least two subcarriers")
    if n_tx < 1 or h.shape[-2] % n_tx:
        raise ValueError(f"{h.shape[-2]} links do not split into {n_tx} transmit streams")
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
        aligned = _fit(h, ref, gain_known, ok, n_tx)  # (..., T, L, S)
        aligned *= weight
        ref = aligned.sum(axis=-3, keepdims=True) / n_valid  # (..., 1, L, S)
    # the window's timing frame: its zero is where the static part's mean phase step
    # over subcarriers (all links together) vanishes, the frame the runtime's canonical
    # grid puts every packet in (``grid``, common slope); a channel given in another frame
    # (the simulator's fast path: absolute delays) is turned into it here
    frame = np.einsum("...tls,...tls->...t", ref[..., 1:], np.conj(ref[..., :-1]))  # (..., 1)
    aligned *= _ramp(-np.angle(frame).astype(np.float32), h.shape[-1])[..., None, :]
    ref = aligned.sum(axis=-3, keepdims=True) / n_valid
    static = ref  # (..., 1, L, S): the mean of the last alignment
    scale = np.sqrt(np.mean(np.abs(static) ** 2, axis=(-3, -2, -1)))  # (...)
    safe = np.where(scale > 0, scale, 1.0).astype(np.float32)[..., None, None, None]
    dynamic = (aligned - static) * weight / safe  # (..., T, L, S)
    return DynamicWindow(
        dynamic=np.ascontiguousarray(np.swapaxes(dynamic, -3, -2)).astype(np.complex64),
        static=(static[..., 0, :, :] / safe[..., 0, :, :]).astype(np.complex64),
        scale=scale.astype(np.float32),
    )
