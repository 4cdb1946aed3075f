"""Motion score of recorded captures over time, plotted into one PNG (one subplot each)."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import numpy.typing as npt

from invispose.csi.formats import CaptureResult, read_capture
from invispose.csi.grid import to_canonical
from invispose.csi.motion import MotionParams, motion_scores
from invispose.errors import InvisPoseError
from invispose.schemas import CsiFrame

logger = logging.getLogger(__name__)

WINDOW_S = 1.0  # motion variance window
Y_TICKS = (1, 2, 4, 10, 20, 40, 100, 200, 400, 1000)
FALLBACK_RATE_HZ = 100.0  # time base for captures whose packets all carry one timestamp
Summary = dict[str, str | int | float | None]


def capture_motion(
    frames: list[CsiFrame],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.bool_], Summary]:
    """Motion score of one capture's frames: (time from start s, score, present, summary).

    Frames are reduced to one layout: the most common subcarrier set, and the antennas
    every such frame has (an Intel 5300 switching Nrx 3 -> 2 keeps two receive chains).
    Times are device times; a capture whose packets share one timestamp is laid out at
    FALLBACK_RATE_HZ. The calibration period is a quarter of the capture, 1 to 10 s.
    """
    layout = Counter((f.shape[2], f.bandwidth_mhz) for f in frames).most_common(1)[0][0]
    same = [f for f in frames if (f.shape[2], f.bandwidth_mhz) == layout]
    n_tx = min(f.shape[0] for f in same)
    n_rx = min(f.shape[1] for f in same)
    csi = np.stack([f.csi[:n_tx, :n_rx] for f in same])  # (N, n_tx, n_rx, n_sub)
    csi = csi.reshape(len(same), n_tx * n_rx, -1)  # (N, L, n_sub)
    amplitude = np.abs(to_canonical(csi, same[0].subcarriers, layout[1]))  # (N, L, S)
    times = np.array([f.device_time_s for f in same], dtype=np.float64)  # (N,)
    time_base = "device"
    if len(same) > 1 and np.ptp(times) == 0:
        times = np.arange(len(same)) / FALLBACK_RATE_HZ
        time_base = f"index at {FALLBACK_RATE_HZ:g} Hz"
    times = times - times.min()
    steps = np.diff(np.sort(times))
    steps = steps[steps > 0]
    rate_hz = float(1.0 / np.median(steps)) if steps.size else FALLBACK_RATE_HZ
    duration_s = float(times.max())
    calibration_s = float(np.clip(duration_s / 4, 1.0, 10.0))
    params = MotionParams(rate_hz=rate_hz, window_s=WINDOW_S, calibration_s=calibration_s)
    score, present = motion_scores(
        times, amplitude, rate_hz=rate_hz, window_s=WINDOW_S, calibration_s=calibration_s
    )  # (N,), (N,)
    scored = score[score > 0]
    summary: Summary = {
        "frames": len(frames),
        "frames_scored": int(scored.size),
        "links": f"{n_tx}x{n_rx}",
        "subcarriers": layout[0],
        "bandwidth_mhz": layout[1],
        "time_base": time_base,
        "duration_s": round(duration_s, 3),
        "rate_hz": round(rate_hz, 2),
        "calibration_s": round(calibration_s, 2),
        "threshold": params.threshold,
        "score_median": round(float(np.median(scored)), 3) if scored.size else None,
        "score_p95": round(float(np.percentile(scored, 95)), 3) if scored.size else None,
        "score_max": round(float(scored.max()), 3) if scored.size else None,
        "present_fraction": round(float(present.mean()), 3),
    }
    return times, score, present, summary


def plot_motion(
    paths: list[Path],
    out_png: Path,
    *,
    chipsets: Mapping[str, str] | None = None,
) -> dict[str, Summary]:
    """Plot the motion score over time of each capture (one subplot each) into ``out_png``.

    ``chipsets`` names the chip of captures that do not (file name -> chipset, e.g.
    ``{"example_4358.pcap": "bcm4358"}``). A capture that cannot be read gets an empty
    subplot and an ``error`` in its summary. Returns the summary per file name.
    """
    # lazy: only this report needs matplotlib; Figure draws with Agg, no pyplot state
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    chipsets = chipsets or {}
    fig = Figure(figsize=(10, 2.2 * max(1, len(paths))), layout="constrained")
    axes = fig.subplots(max(1, len(paths)), 1, squeeze=False)[:, 0]
    summaries: dict[str, Summary] = {}
    for ax, path in zip(axes, paths, strict=False):
        path = Path(path)
        try:
            result: CaptureResult = read_capture(path, chipset=chipsets.get(path.name))
        except InvisPoseError as exc:
            logger.warning("cannot read %s: %s", path, exc)
            summaries[path.name] = {"error": str(exc)}
            ax.set_title(f"{path.name}: {exc}", fontsize=8)
            continue
        base: Summary = {
            "format": result.format,
            "chipset": result.chipset,
            "bad_records": result.bad_records,
        }
        if not result.frames:
            summaries[path.name] = {**base, "frames": 0, "error": "no frames"}
            ax.set_title(f"{path.name}: no frames", fontsize=8)
            continue
        times, score, present, summary = capture_motion(result.frames)
        params_threshold = float(summary["threshold"] or 0)
        summaries[path.name] = {**base, **summary}
        shown = score > 0
        t_shown, s_shown = times[shown], score[shown]  # (M,), (M,)
        # break the line where packets stop for longer than a window
        breaks = np.flatnonzero(np.diff(t_shown) > WINDOW_S) + 1
        t_plot = np.insert(t_shown, breaks, np.nan)
        s_plot = np.insert(s_shown, breaks, np.nan)
        ax.plot(t_plot, s_plot, lw=0.8, color="tab:blue", label="score")
        ax.set_yscale("log")
        top = float(s_shown.max()) if s_shown.size else 1.0
        ax.set_yticks([v for v in Y_TICKS if v <= max(top, params_threshold) * 1.2])
        ax.yaxis.set_major_formatter(ScalarFormatter())
        ax.yaxis.set_minor_formatter(NullFormatter())
        if not s_shown.size:
            ax.text(
                0.5,
                0.5,
                f"no score: {summary['frames']} frames over {summary['duration_s']} s",
                transform=ax.transAxes,
                ha="center",
                fontsize=8,
            )
        ax.axhline(params_threshold, color="tab:red", lw=0.8, ls="--")
        if present.any():
            ax.fill_between(
                times,
                0,
                1,
                where=present,
                transform=ax.get_xaxis_transform(),
                color="tab:orange",
                alpha=0.25,
                label="motion",
            )
        ax.set_title(
            f"{path.name} ({result.chipset or result.format}, {summary['links']} links, "
            f"{summary['frames']} frames, {summary['rate_hz']} Hz, "
            f"calibration {summary['calibration_s']} s)",
            fontsize=8,
        )
        ax.set_ylabel("variance / baseline", fontsize=7)
        ax.tick_params(labelsize=7)
    axes[-1].set_xlabel("time since first packet (s); threshold dashed")
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=110)
    return summaries
