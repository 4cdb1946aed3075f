"""Irregular packet times onto a uniform time grid, nearest packet per grid point.

CSI arrives irregularly: Intel 5300 logs in ~1 kHz bursts, Nexmon follows ambient
traffic at ~10 packets/s, ESP32 is paced at ~100/s with drops. The model wants a
uniform grid, so each grid point takes the packet nearest to it in time when one lies
within ``max_gap_s``; otherwise the point is invalid. Invalid points are filled with
zeros (not the previous value): a held value would fake a frozen channel, zeros are
obviously empty, and the model sees the mask either way.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

TIME_EPS_S = 1e-9  # grid times are sums of floats: a packet exactly max_gap_s away counts

IndexArray = npt.NDArray[np.intp]
BoolArray = npt.NDArray[np.bool_]


def time_grid(t_end_s: float, rate_hz: float, n_samples: int) -> npt.NDArray[np.float64]:
    """The grid ``t_end_s - (n_samples-1)/rate_hz ... t_end_s``, float64 (n_samples,)."""
    if rate_hz <= 0:
        raise ValueError(f"rate_hz must be positive, got {rate_hz}")
    steps = np.arange(n_samples - 1, -1, -1, dtype=np.float64)  # (n_samples,) n-1 .. 0
    return t_end_s - steps / rate_hz


def nearest_indices(
    times_s: npt.ArrayLike, grid_s: npt.ArrayLike, max_gap_s: float
) -> tuple[IndexArray, BoolArray]:
    """For each grid time, the index into ``times_s`` of the nearest packet.

    ``times_s`` (N,) may be unsorted, hold duplicates (the later one in input order
    wins) or non-finite values (never chosen). Returns (index intp (G,), valid bool (G,));
    invalid points (no packet within ``max_gap_s``) get index 0.
    """
    times = np.asarray(times_s, dtype=np.float64).reshape(-1)  # (N,)
    grid = np.asarray(grid_s, dtype=np.float64).reshape(-1)  # (G,)
    finite = np.flatnonzero(np.isfinite(times))  # (F,) candidate packet indices
    if finite.size == 0:
        return np.zeros(grid.size, dtype=np.intp), np.zeros(grid.size, dtype=bool)
    order = finite[np.argsort(times[finite], kind="stable")]  # (F,) sorted by time
    ts = times[order]  # (F,) ascending
    last_of_run = np.append(ts[1:] != ts[:-1], True)  # (F,) keep the last duplicate
    order, ts = order[last_of_run], ts[last_of_run]  # (U,)
    right = np.searchsorted(ts, grid, side="left")  # (G,) first packet at or after the point
    left = np.clip(right - 1, 0, ts.size - 1)  # (G,)
    right = np.clip(right, 0, ts.size - 1)  # (G,)
    d_left = np.abs(grid - ts[left])  # (G,)
    d_right = np.abs(ts[right] - grid)  # (G,)
    pick = np.where(d_right < d_left, right, left)  # (G,) ties go to the earlier packet
    gap = np.minimum(d_left, d_right)  # (G,)
    valid = gap <= max_gap_s + TIME_EPS_S  # (G,)
    index = np.where(valid, order[pick], 0).astype(np.intp)  # (G,)
    return index, valid


def resample_time(
    times_s: npt.ArrayLike,
    values: npt.ArrayLike,
    t_end_s: float,
    rate_hz: float,
    n_samples: int,
    max_gap_s: float | None = None,
) -> tuple[npt.NDArray[np.generic], BoolArray]:
    """Packets (N, ...) at ``times_s`` (N,) onto ``n_samples`` uniform points ending at t_end_s.

    Each grid point takes the nearest packet within ``max_gap_s`` (default 1.5/rate_hz);
    points without one are invalid and hold zeros. Returns (values on the grid
    (n_samples, ...) in the dtype of ``values``, valid bool (n_samples,)).
    """
    times = np.asarray(times_s, dtype=np.float64).reshape(-1)  # (N,)
    data = np.asarray(values)  # (N, ...)
    if data.ndim == 0 or data.shape[0] != times.size:
        raise ValueError(
            f"values must have one row per time ({times.size}), got shape {data.shape}"
        )
    gap_s = 1.5 / rate_hz if max_gap_s is None else float(max_gap_s)
    grid = time_grid(t_end_s, rate_hz, n_samples)  # (n_samples,)
    index, valid = nearest_indices(times, grid, gap_s)  # (n_samples,), (n_samples,)
    out = np.zeros((n_samples, *data.shape[1:]), dtype=data.dtype)  # (n_samples, ...)
    if times.size:
        out[valid] = data[index[valid]]
    return out, valid
