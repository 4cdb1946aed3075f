"""Model-free motion detection: windowed variance of normalised CSI amplitude vs a baseline.

A still room gives a still channel: after per-packet normalisation (which removes AGC
steps) the amplitude of every link and subcarrier varies only by noise. Moving bodies
modulate it. The raw measure is the temporal variance of normalised amplitude over the
last ``window_s``, averaged over links and subcarriers. The score is that variance over
an empty-room baseline the detector learns by itself:

* minimum statistics: the candidate baseline is the smallest windowed variance seen in
  the last ``calibration_s`` (kept as per-block minima, blocks of calibration_s / 4), so a
  quiet moment is enough to learn the room and motion never pulls the baseline down;
* the baseline follows that candidate down at once, but rises at most by a factor e per
  ``baseline_rise_s``: a room that became noisier for good (new furniture, weaker link) is
  learned within minutes, while ongoing motion would need several minutes to be learned.

``present`` turns on when the score exceeds ``threshold`` and off when it drops below
``threshold * release``, and stays off for the first ``calibration_s``.
``motion_scores`` computes the same scores for a whole capture at once; for time-sorted
packets of one shape it matches feeding them one by one through ``MotionDetector.update``.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from invispose.csi.sanitize import normalize_amplitude

N_BLOCKS = 4  # minimum-statistics blocks per calibration_s
MIN_PACKETS = 3  # packets a window needs before its variance counts
RESUM_EVERY = 4096  # updates between exact re-sums of the running window sums
CHUNK_BYTES = 64 << 20  # memory bound of motion_scores' cumulative sums


@dataclass(frozen=True, slots=True)
class MotionParams:
    """Settings shared by ``MotionDetector`` and ``motion_scores``."""

    rate_hz: float = 100.0  # nominal packet rate; bounds a window at 10x that many packets
    window_s: float = 1.0  # variance window: long enough for breathing-free walking cues
    calibration_s: float = 10.0  # minimum-statistics horizon and initial calibration
    threshold: float = 4.0  # variance ratio above the empty room that means motion
    release: float = 0.5  # present clears below threshold * release (hysteresis)
    baseline_rise_s: float = 60.0  # the baseline may rise by a factor e per this time
    var_floor: float = 1e-6  # smallest variance (normalised units) a baseline can take

    def __post_init__(self) -> None:
        if self.rate_hz <= 0 or self.window_s <= 0 or self.calibration_s <= 0:
            raise ValueError("rate_hz, window_s and calibration_s must be positive")
        if self.baseline_rise_s <= 0 or self.var_floor <= 0 or not 0 < self.release <= 1:
            raise ValueError("baseline_rise_s, var_floor > 0 and 0 < release <= 1 required")

    @property
    def max_packets(self) -> int:
        """Most packets one window holds (bursts beyond 10x the nominal rate are thinned)."""
        return max(8, math.ceil(10 * self.window_s * self.rate_hz))

    @property
    def block_s(self) -> float:
        return self.calibration_s / N_BLOCKS


class MotionDetector:
    """Streaming motion score from one link set's CSI amplitude, packet by packet.

    Packets must come in time order; one earlier than the previous is ignored. A change
    of shape (L, S) restarts the variance window but keeps the learned baseline.
    """

    def __init__(
        self,
        *,
        rate_hz: float,
        window_s: float = 1.0,
        calibration_s: float = 10.0,
        threshold: float = 4.0,
        release: float = 0.5,
        baseline_rise_s: float = 60.0,
        var_floor: float = 1e-6,
    ) -> None:
        self.params = MotionParams(
            rate_hz, window_s, calibration_s, threshold, release, baseline_rise_s, var_floor
        )
        self.score = 0.0
        self.packets_ignored = 0
        self._present = False
        self._t0: float | None = None  # first packet: block and calibration clock
        self._window_t0 = 0.0  # first packet since the window (re)started
        self._last_t = -math.inf
        self._shape: tuple[int, ...] | None = None
        self._ref: npt.NDArray[np.float64] | None = None  # (L*S,) first packet, for precision
        self._window: deque[tuple[float, npt.NDArray[np.float64]]] = deque()
        self._s1: npt.NDArray[np.float64] = np.zeros(0)  # (L*S,) running sum of x
        self._s2: npt.NDArray[np.float64] = np.zeros(0)  # (L*S,) running sum of x^2
        self._since_resum = 0
        self._block = (-1, math.inf)  # (block index, min log-variance) being filled
        self._block_mins: deque[tuple[int, float]] = deque()  # finished blocks
        self._log_base: float | None = None  # log baseline variance
        self._base_t = 0.0

    @property
    def present(self) -> bool:
        """Motion now (score above threshold, with hysteresis, after calibration)."""
        return self._present

    @property
    def baseline(self) -> float | None:
        """The learned empty-room variance, None before the first full window."""
        return None if self._log_base is None else math.exp(self._log_base)

    def update(self, amplitude: npt.ArrayLike, time_s: float) -> float:
        """Add one packet's amplitude (L, S) at ``time_s``; return the motion score."""
        p = self.params
        amp = np.asarray(amplitude, dtype=np.float32)  # (L, S)
        if amp.ndim == 1:
            amp = amp[None, :]
        if not math.isfinite(time_s) or time_s < self._last_t or not np.all(np.isfinite(amp)):
            self.packets_ignored += 1
            return self.score
        if amp.shape != self._shape:
            self._restart_window(amp.shape)
        x = normalize_amplitude(amp).reshape(-1).astype(np.float64)  # (L*S,)
        if self._ref is None:
            self._ref = x.copy()
            self._window_t0 = time_s
        if self._t0 is None:
            self._t0 = time_s
        self._last_t = time_s
        x -= self._ref
        self._window.append((time_s, x))
        self._s1 += x
        self._s2 += x * x
        while self._window and (
            self._window[0][0] <= time_s - p.window_s or len(self._window) > p.max_packets
        ):
            _, old = self._window.popleft()
            self._s1 -= old
            self._s2 -= old * old
        self._since_resum += 1
        if self._since_resum >= RESUM_EVERY:
            self._resum()

        count = len(self._window)
        ready = count >= MIN_PACKETS and time_s - self._window_t0 >= 0.5 * p.window_s
        if not ready:
            self.score = 0.0
            self._present = False
            return self.score
        mean = self._s1 / count  # (L*S,)
        var = float(np.mean(np.maximum(self._s2 / count - mean * mean, 0.0)))
        log_v = math.log(max(var, p.var_floor))
        log_m = self._min_statistics(log_v, time_s)
        if self._log_base is None:
            self._log_base = log_m
        else:
            rise = (time_s - self._base_t) / p.baseline_rise_s
            self._log_base = min(log_m, self._log_base + rise)
        self._base_t = time_s
        self.score = math.exp(log_v - self._log_base)
        if time_s - self._t0 < p.calibration_s or self.score < p.threshold * p.release:
            self._present = False
        elif self.score > p.threshold:
            self._present = True
        return self.score

    def _min_statistics(self, log_v: float, time_s: float) -> float:
        """Fold one log-variance into the blocks; the minimum over the horizon."""
        assert self._t0 is not None
        block = math.floor((time_s - self._t0) / self.params.block_s)
        if block != self._block[0]:
            if self._block[0] >= 0:
                self._block_mins.append(self._block)
            self._block = (block, log_v)
        else:
            self._block = (block, min(self._block[1], log_v))
        while self._block_mins and self._block_mins[0][0] < block - N_BLOCKS:
            self._block_mins.popleft()
        return min([self._block[1], *(m for _, m in self._block_mins)])

    def _restart_window(self, shape: tuple[int, ...]) -> None:
        self._shape = shape
        self._ref = None
        self._window.clear()
        size = int(np.prod(shape))
        self._s1 = np.zeros(size)
        self._s2 = np.zeros(size)
        self._t0 = None if self._log_base is None else self._t0

    def _resum(self) -> None:
        """Recompute the running sums exactly (they drift by rounding over long runs)."""
        xs = np.stack([x for _, x in self._window]) if self._window else None  # (n, L*S)
        self._s1 = xs.sum(axis=0) if xs is not None else np.zeros_like(self._s1)
        self._s2 = (xs * xs).sum(axis=0) if xs is not None else np.zeros_like(self._s2)
        self._since_resum = 0


def motion_scores(
    times_s: npt.ArrayLike,
    amplitude: npt.ArrayLike,
    *,
    rate_hz: float = 100.0,
    window_s: float = 1.0,
    calibration_s: float = 10.0,
    threshold: float = 4.0,
    release: float = 0.5,
    baseline_rise_s: float = 60.0,
    var_floor: float = 1e-6,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """Motion score and presence for a whole capture: times (N,), amplitude (N, L, S).

    Returns (score float64 (N,), present bool (N,)) in the input's order. Packets with a
    non-finite time or amplitude score 0 and are left out of every window.
    """
    p = MotionParams(
        rate_hz, window_s, calibration_s, threshold, release, baseline_rise_s, var_floor
    )
    times = np.asarray(times_s, dtype=np.float64).reshape(-1)  # (N,)
    amp = np.asarray(amplitude, dtype=np.float32)  # (N, L, S)
    if amp.ndim == 2:
        amp = amp[:, None, :]
    if amp.ndim != 3 or amp.shape[0] != times.size:
        raise ValueError(f"amplitude must be (N, L, S) with N={times.size}, got {amp.shape}")
    score = np.zeros(times.size)  # (N,)
    present = np.zeros(times.size, dtype=bool)  # (N,)
    usable = np.isfinite(times) & np.all(np.isfinite(amp), axis=(1, 2))  # (N,)
    order = np.flatnonzero(usable)
    order = order[np.argsort(times[order], kind="stable")]  # (M,) time-sorted packets
    if order.size == 0:
        return score, present
    t = times[order]  # (M,)
    x = normalize_amplitude(amp[order]).reshape(order.size, -1)  # (M, L*S)

    n = np.arange(t.size)  # (M,)
    start = np.searchsorted(t, t - p.window_s, side="right")  # (M,) first packet in window
    start = np.maximum(start, n - p.max_packets + 1)
    count = n - start + 1  # (M,)
    var = _window_variance(x, start, count)  # (M,)
    ready = (count >= MIN_PACKETS) & (t - t[0] >= 0.5 * p.window_s)  # (M,)

    sc = np.zeros(t.size)  # (M,)
    calibrated = t - t[0] >= p.calibration_s  # (M,)
    r = np.flatnonzero(ready)
    if r.size:
        tr = t[r]  # (R,)
        log_v = np.log(np.maximum(var[r], p.var_floor))  # (R,)
        log_m = _min_statistics(log_v, np.floor((tr - t[0]) / p.block_s).astype(np.int64))
        # base_k = min(m_k, base_{k-1} + dt/rise) unrolls to a running minimum of m - g
        g = (tr - tr[0]) / p.baseline_rise_s  # (R,)
        log_base = np.minimum.accumulate(log_m - g) + g  # (R,)
        sc[r] = np.exp(log_v - log_base)
    # hysteresis: 1 = on, 0 = off, -1 = keep the previous state (forward-filled)
    decided = np.where(sc > p.threshold, 1, np.where(sc < p.threshold * p.release, 0, -1))
    decided[~calibrated | ~ready] = 0
    last = np.maximum.accumulate(np.where(decided >= 0, n, -1))  # (M,)
    state = np.where(last >= 0, decided[np.maximum(last, 0)], 0) == 1  # (M,)
    score[order] = sc
    present[order] = state
    return score, present


def _window_variance(
    x: npt.NDArray[np.float32], start: npt.NDArray[np.intp], count: npt.NDArray[np.intp]
) -> npt.NDArray[np.float64]:
    """Mean over columns of each window's variance: x (M, C), windows [start, n] -> (M,)."""
    m, c = x.shape
    end = np.arange(1, m + 1)  # (M,) exclusive window end in cumulative-sum rows
    ref = x[0].astype(np.float64)  # (C,) offset that keeps the cumulative sums small
    total = np.zeros(m)  # (M,)
    cols = max(1, CHUNK_BYTES // (16 * (m + 1)))
    for lo in range(0, c, cols):  # column chunks bound the (M+1, cols) float64 sums
        xc = x[:, lo : lo + cols].astype(np.float64) - ref[lo : lo + cols]  # (M, cols)
        s1 = np.zeros((m + 1, xc.shape[1]))
        s2 = np.zeros((m + 1, xc.shape[1]))
        np.cumsum(xc, axis=0, out=s1[1:])
        np.cumsum(xc * xc, axis=0, out=s2[1:])
        mean = (s1[end] - s1[start]) / count[:, None]  # (M, cols)
        sq = (s2[end] - s2[start]) / count[:, None]  # (M, cols)
        total += np.maximum(sq - mean * mean, 0.0).sum(axis=1)
    mean_var: npt.NDArray[np.float64] = total / c
    return mean_var


def _min_statistics(
    log_v: npt.NDArray[np.float64], block: npt.NDArray[np.int64]
) -> npt.NDArray[np.float64]:
    """Minimum of ``log_v`` over its own block so far and the N_BLOCKS blocks before it."""
    out = np.empty_like(log_v)  # (R,)
    ids, first = np.unique(block, return_index=True)  # blocks are non-decreasing
    bounds = np.append(first, log_v.size)
    block_min = np.empty(ids.size)  # (B,)
    for b in range(ids.size):  # one step per block of calibration_s / N_BLOCKS
        lo, hi = bounds[b], bounds[b + 1]
        earlier = block_min[:b][ids[:b] >= ids[b] - N_BLOCKS]
        floor = earlier.min() if earlier.size else np.inf
        out[lo:hi] = np.minimum(np.minimum.accumulate(log_v[lo:hi]), floor)
        block_min[b] = log_v[lo:hi].min()
    return out
