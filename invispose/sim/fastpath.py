"""Training fast path: the receiver report and window transform for large batches.

Training windows are simulated right at the canonical grid's points (fractional
subcarrier indices are just frequencies), so the canonical resampling of
``window_arrays`` has nothing left to do. What remains per element is noise, AGC
scaling, quantisation, per-packet amplitude normalisation and phase sanitization
(unwrap, least-squares line removal), done here in float32 with torch for the normal
draws and arctan2 (NumPy has no vectorised float32 arctan2).

The per-packet common phase and timing slope are left out: ``window_arrays`` removes
any per-packet phase offset and linear slope exactly (its slope estimate from neighbour
products is blind to a common phase, the sanitizer removes the remaining line), so they
change nothing but which way the rounding grid is turned. The full receiver model
stays in ``impairments`` (streaming scenes, wire output, and ``exact`` training windows);
tests compare the two paths.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import numpy.typing as npt
import torch

from invispose.csi.sanitize import (
    center_relative_phasors,
    normalize_window_amplitude,
    relative_phasor,
)

F32 = npt.NDArray[np.float32]
C64 = npt.NDArray[np.complex64]
TWO_PI = np.float32(2.0 * np.pi)


@contextmanager
def single_thread() -> Iterator[None]:
    """Run torch ops on one thread: at these sizes extra threads only spin on a busy CPU."""
    previous = torch.get_num_threads()
    if previous != 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if previous != 1:
            torch.set_num_threads(previous)


def report_fast(
    generator: torch.Generator,
    channel: C64,
    snr_db: npt.ArrayLike,
    target_rms: float,
    max_int: int,
    gain_jitter_db: float,
    step_db: float,
    valid: npt.NDArray[np.bool_],
) -> tuple[F32, F32, F32]:
    """Noisy, AGC-scaled, quantised CSI of a clean channel (n, L, T, S), as (re, im).

    Packets where ``valid`` (n, T) is False are zero, as the runtime's grid fills them.
    Returns contiguous float32 (n, L, T, S) real and imaginary parts and the AGC gain
    float32 (n, T) in dB that scaled each packet.
    """
    h = np.ascontiguousarray(channel, dtype=np.complex64)
    n, n_l, n_t, n_s = h.shape
    with single_thread():
        shape = (2, n, n_l, n_t, n_s)
        noise = torch.randn(shape, generator=generator, dtype=torch.float32).numpy()
    re, im = noise[0], noise[1]  # (n, L, T, S) each, contiguous
    power = np.mean(h.real * h.real + h.imag * h.imag, axis=(1, 3))  # (n, T) mean |h|^2
    snr = 10.0 ** (np.asarray(snr_db, dtype=np.float32) / 10.0)  # (n,)
    sigma = np.sqrt(power.mean(axis=1) / snr / 2.0).astype(np.float32)  # (n,)
    # AGC: per-packet gain towards the target, quantised to the chip's step
    total = power + 2.0 * sigma[:, None] ** 2  # (n, T)
    wander = torch.randn((n, 1), generator=generator).numpy() * gain_jitter_db
    wanted = 20.0 * math.log10(target_rms) - 10.0 * np.log10(np.maximum(total, 1e-30)) + wander
    gain_db = np.round(wanted / step_db) * step_db  # (n, T)
    scale = (10.0 ** (gain_db / 20.0) * valid).astype(np.float32)[:, None, :, None]
    for part, clean in ((re, h.real), (im, h.imag)):
        part *= sigma[:, None, None, None]
        part += clean
        part *= scale
        np.round(part, out=part)
        np.clip(part, -max_int, max_int, out=part)
    return re, im, gain_db.astype(np.float32)


def canonical_arrays(
    re: F32, im: F32, positions: npt.ArrayLike, valid: npt.NDArray[np.bool_]
) -> tuple[F32, F32, F32]:
    """Amplitude, sanitized and relative phase of CSI (n, L, T, S) on the canonical grid.

    Same as ``window_arrays`` after its resampling: amplitude divided by each window's
    RMS over links, packets and subcarriers, phase unwrapped over subcarriers minus its
    least-squares line against ``positions`` (S,), relative phase (against link 0)
    minus its mean over the ``valid`` (n, T) steps. Returns float32 (n, L, T, S) each.
    """
    power = re * re
    power += im * im  # (n, L, T, S)
    amp = normalize_window_amplitude(np.sqrt(power, out=power))  # (n, L, T, S)
    csi = np.empty(re.shape, dtype=np.complex64)  # (n, L, T, S)
    csi.real, csi.imag = re, im
    relative = relative_phasor(csi, link_axis=1)  # (n, L, T, S) against link 0
    with single_thread():
        phase = torch.atan2(torch.from_numpy(im), torch.from_numpy(re)).numpy()  # (n, L, T, S)
    # unwrap along S: remove whole turns from each step, then accumulate
    turns = np.diff(phase, axis=-1)
    turns *= np.float32(1.0 / TWO_PI)
    np.round(turns, out=turns)
    np.cumsum(turns, axis=-1, out=turns)
    turns *= TWO_PI
    phase[..., 1:] -= turns
    x = np.asarray(positions, dtype=np.float32)
    xc = x - x.mean()
    line = np.einsum("...s,s->...", phase, xc) / np.float32(max(float(xc @ xc), 1e-30))
    phase -= phase.mean(axis=-1, keepdims=True)
    phase -= line[..., None] * xc
    return amp, phase, center_relative_phasors(relative, valid)
