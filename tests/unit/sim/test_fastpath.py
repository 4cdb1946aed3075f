"""The training fast path against the runtime's DSP and the full receiver model."""

from __future__ import annotations

import numpy as np
import torch

from invispose.csi.grid import canonical_positions
from invispose.csi.sanitize import (
    center_relative_phasors,
    normalize_window_amplitude,
    relative_phasor,
    sanitize_phase,
)
from invispose.sim.dataset import generate_batch
from invispose.sim.fastpath import canonical_arrays, report_fast
from invispose.sim.parallel import parallel_batches


def _smooth_csi(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Multipath-like CSI (n, L, T, S): a few paths with delays up to 80 ns."""
    n, n_l, n_t, n_s = shape
    k = np.linspace(-28, 28, n_s)
    tau = rng.uniform(0, 80e-9, (n, n_l, n_t, 5, 1))
    a = rng.normal(size=(n, n_l, 1, 5, 1)) + 1j * rng.normal(size=(n, n_l, 1, 5, 1))
    h = (a * np.exp(-2j * np.pi * 312.5e3 * k * tau)).sum(axis=3)
    return (h * 20).astype(np.complex64)


def test_canonical_arrays_equal_the_runtime_sanitizers() -> None:
    rng = np.random.default_rng(0)
    csi = _smooth_csi(rng, (6, 3, 20, 32))
    csi[:, :, 4] = 0  # a lost packet
    valid = np.ones((6, 20), dtype=bool)
    valid[:, 4] = False
    amp, phase, rel = canonical_arrays(np.ascontiguousarray(csi.real),
                                       np.ascontiguousarray(csi.imag), canonical_positions(), valid)
    want_amp = normalize_window_amplitude(np.abs(csi))  # (n, L, T, S), one gain a window
    want_phase = sanitize_phase(csi, canonical_positions())
    assert np.allclose(amp, want_amp, atol=1e-5)
    close = np.isclose(phase, want_phase, atol=1e-4)
    assert close.mean() > 0.999  # unwrap ties may round either way
    packets = relative_phasor(np.swapaxes(csi, 1, 2))  # (n, T, L, S) per packet
    want_rel = center_relative_phasors(np.swapaxes(packets, 1, 2), valid)  # (n, L, T, S)
    assert np.allclose(rel, want_rel, atol=1e-4)
    assert np.all(rel[:, 0] == 0) and np.all(rel[:, :, 4] == 0)
    assert np.abs(rel[:, 1:]).mean() > 0.1  # the links differ, so it carries something


def test_report_fast_quantises_and_blanks_lost_packets() -> None:
    rng = np.random.default_rng(1)
    clean = _smooth_csi(rng, (4, 2, 10, 32)) * 1e-4  # far below one integer step
    valid = np.ones((4, 10), dtype=bool)
    valid[:, 3] = False
    re, im, _ = report_fast(torch.Generator().manual_seed(0), clean, [25.0] * 4, 22.0, 127, 0.5,
                         1.0, valid)
    assert np.array_equal(re, np.round(re)) and np.abs(re).max() <= 127
    assert np.all(re[:, :, 3] == 0) and np.all(im[:, :, 3] == 0)
    rms = np.sqrt((re**2 + im**2)[:, :, valid[0]].mean())
    assert 15 < rms < 32  # AGC brought it to the target


def test_parallel_batches_match_direct_calls() -> None:
    batches = list(parallel_batches("val", 2, 6, 2, workers=1))
    direct = generate_batch("val", 2 * 1_000_003 + 1, 6)
    assert np.array_equal(batches[1].amplitude, direct.amplitude)
