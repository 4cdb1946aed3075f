"""Simulated vs real CSI: the statistics and plots of docs/sim_report.md.

Regenerate with ``python -m invispose.sim.report`` (from the project root; ``--no-bench``
skips the throughput measurement). Real captures come from ``shared/data/csi`` through
``invispose.csi.formats.read_capture``; simulated ones from the demo scene
(``invispose/sim/scenes/demo.yaml``), one router per hardware. Compared per hardware:
the distribution of per-packet normalised amplitude, the amplitude autocorrelation over
time (both resampled to 100 Hz), and the phase slope over subcarriers before and after
sanitization.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from invispose.csi.formats import read_capture
from invispose.csi.grid import kept_mask
from invispose.csi.sanitize import sanitize_phase
from invispose.csi.timegrid import resample_time
from invispose.schemas import CsiFrame
from invispose.sim.scene import Scene
from invispose.sim.scene_config import load_scene_config

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
REAL = ROOT.parent / "shared" / "data" / "csi"
DEMO = Path(__file__).parent / "scenes" / "demo.yaml"
# hardware -> (real capture, demo router)
PAIRS = {
    "esp32": ("esp32/example_100hz_pitraffic.csv", "router_b"),
    "intel5300": ("intel5300/los_100.dat", "router_a"),
    "nexmon": ("nexmon/example_43455c0.pcap", "router_c"),
}
GRID_HZ = 100.0
MAX_LAG = 100  # 1 s at 100 Hz
SIM_SECONDS = 20.0
F64 = npt.NDArray[np.float64]


@dataclass(slots=True)
class Prepared:
    """Kept-subcarrier CSI of one capture, (N, L, K), with device times (N,) and indices."""

    csi: npt.NDArray[np.complex128]
    times_s: F64
    subcarriers: npt.NDArray[np.int64]


def prepare(frames: list[CsiFrame], bandwidth_mhz: int, *, signal_only: bool = False) -> Prepared:
    """The frames of the most common layout, on the subcarriers the DSP keeps.

    ``signal_only`` also drops subcarriers whose mean amplitude is under 15 % of the
    strong ones (a capture whose frames fill only part of the band, as the Nexmon sample).
    """
    shapes = [f.csi.shape for f in frames]
    common = max(set(shapes), key=shapes.count)
    chosen = [f for f in frames if f.csi.shape == common]
    csi = np.stack([f.csi for f in chosen]).astype(np.complex128)  # (N, n_tx, n_rx, S)
    csi = csi.reshape(len(chosen), -1, csi.shape[-1])  # (N, L, S)
    sub = np.asarray(chosen[0].subcarriers, dtype=np.int64)
    keep = kept_mask(sub, bandwidth_mhz, csi)
    if signal_only:
        level = np.abs(csi).mean(axis=(0, 1))
        keep &= level >= 0.15 * np.quantile(level[keep], 0.9)
    times = np.asarray([f.device_time_s for f in chosen])
    return Prepared(csi[..., keep], times, sub[keep])


def normalised_amplitude(p: Prepared) -> F64:
    """|h| over its per-packet, per-link mean over subcarriers (AGC removed): (N, L, K)."""
    amp = np.abs(p.csi)
    out: F64 = amp / np.maximum(amp.mean(axis=-1, keepdims=True), 1e-12)
    return out


def autocorrelation(p: Prepared) -> F64:
    """Mean autocorrelation of normalised amplitude per subcarrier, lags 0..MAX_LAG at 100 Hz."""
    amp = normalised_amplitude(p)  # (N, L, K)
    span = p.times_s.max() - p.times_s.min()
    n = int(span * GRID_HZ)
    grid, valid = resample_time(p.times_s, amp, p.times_s.max(), GRID_HZ, n)  # (n, L, K)
    x = np.asarray(grid, dtype=np.float64)
    x = np.where(valid[:, None, None], x - x[valid].mean(axis=0), 0.0)
    v = valid.astype(np.float64)
    out = np.empty(MAX_LAG + 1)
    for lag in range(MAX_LAG + 1):
        a, b = x[: n - lag], x[lag:]
        pairs = (v[: n - lag] * v[lag:]).sum()
        cov = (a * b).sum(axis=0) / max(pairs, 1.0)  # (L, K)
        var = (x * x).sum(axis=0) / max(v.sum(), 1.0)
        out[lag] = float(np.mean(cov / np.maximum(var, 1e-12)))
    return out


def phase_slopes(p: Prepared) -> tuple[F64, F64]:
    """Per-packet raw phase slope (rad per subcarrier index) and the residual after sanitizing.

    Returns (slopes (N·L,), sanitized phase std per packet and link (N·L,)).
    """
    x = p.subcarriers.astype(np.float64)
    phase = np.unwrap(np.angle(p.csi), axis=-1)  # (N, L, K)
    xc = x - x.mean()
    slope = (phase @ xc) / (xc @ xc)
    clean = sanitize_phase(p.csi, x)
    return slope.reshape(-1), clean.std(axis=-1).reshape(-1)


def _summary(p: Prepared) -> dict[str, object]:
    amp = normalised_amplitude(p)
    slope, residual = phase_slopes(p)
    freq_cv = float(np.mean(amp.std(axis=-1)))
    raw = np.abs(p.csi)
    time_cv = float(np.mean(raw.std(axis=0) / np.maximum(raw.mean(axis=0), 1e-12)))
    return {
        "packets": int(p.csi.shape[0]),
        "links": int(p.csi.shape[1]),
        "subcarriers": int(p.csi.shape[2]),
        "amplitude_quantiles_5_50_95": np.round(np.quantile(amp, [0.05, 0.5, 0.95]), 3).tolist(),
        "frequency_cv": round(freq_cv, 3),
        "time_cv": round(time_cv, 3),
        "slope_rad_per_subcarrier_mean_std": [round(float(slope.mean()), 4),
                                              round(float(slope.std()), 4)],
        "sanitized_phase_std_rad": round(float(np.median(residual)), 3),
    }


def compare(sim_seconds: float = SIM_SECONDS) -> tuple[dict[str, dict[str, object]], dict[
        str, dict[str, Prepared]]]:
    """Statistics of real and simulated captures per hardware, and the prepared data."""
    config = load_scene_config(DEMO)
    scene = Scene.from_config(config, epoch_s=0.0)
    empty = Scene.from_config(config.model_copy(update={"people": []}), epoch_s=0.0)
    stats: dict[str, dict[str, object]] = {}
    data: dict[str, dict[str, Prepared]] = {}
    for hw, (real_path, router) in PAIRS.items():
        real_frames = read_capture(REAL / real_path).frames
        sim_frames = scene.frames(router, 0.0, sim_seconds)
        bw = sim_frames[0].bandwidth_mhz
        real = prepare(real_frames, real_frames[0].bandwidth_mhz, signal_only=hw == "nexmon")
        sim = prepare(sim_frames, bw)
        still = prepare(empty.frames(router, 0.0, sim_seconds), bw)
        data[hw] = {"real": real, "sim": sim, "sim, empty room": still}
        real_amp, sim_amp = normalised_amplitude(real).ravel(), normalised_amplitude(sim).ravel()
        grid = np.linspace(0.0, 3.0, 301)
        ks = np.abs(np.searchsorted(np.sort(real_amp), grid) / real_amp.size
                    - np.searchsorted(np.sort(sim_amp), grid) / sim_amp.size).max()
        ac_real, ac_sim = autocorrelation(real), autocorrelation(sim)
        stats[hw] = {
            "real": {"file": real_path, **_summary(real),
                     "autocorr_10ms_100ms_1s": np.round(ac_real[[1, 10, 100]], 3).tolist()},
            "sim": {"router": router, **_summary(sim),
                    "autocorr_10ms_100ms_1s": np.round(ac_sim[[1, 10, 100]], 3).tolist()},
            "sim_empty_room": {
                **_summary(still),
                "autocorr_10ms_100ms_1s": np.round(autocorrelation(still)[[1, 10, 100]],
                                                   3).tolist(),
            },
            "amplitude_ks_distance": round(float(ks), 3),
        }
    return stats, data


def plot(data: dict[str, dict[str, Prepared]], out_dir: Path) -> list[Path]:
    """Write the three comparison figures; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    colors = {"real": "tab:blue", "sim": "tab:orange", "sim, empty room": "tab:green"}
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for ax, (hw, pair) in zip(axes, data.items(), strict=True):
        for kind, p in pair.items():
            ax.hist(normalised_amplitude(p).ravel(), bins=np.linspace(0, 2.5, 76), density=True,
                    histtype="step", lw=1.6, color=colors[kind], label=kind)
        ax.set_title(f"{hw}: |h| / per-packet mean")
        ax.set_xlabel("normalised amplitude")
        ax.legend()
    fig.tight_layout()
    paths.append(out_dir / "sim_amplitude.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    lags_s = np.arange(MAX_LAG + 1) / GRID_HZ
    for ax, (hw, pair) in zip(axes, data.items(), strict=True):
        for kind, p in pair.items():
            ax.plot(lags_s, autocorrelation(p), color=colors[kind], label=kind)
        ax.set_title(f"{hw}: amplitude autocorrelation")
        ax.set_xlabel("lag (s)")
        ax.set_ylim(-0.2, 1.05)
        ax.legend()
    fig.tight_layout()
    paths.append(out_dir / "sim_autocorr.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(2, 3, figsize=(13, 6.4))
    for col, (hw, pair) in enumerate(data.items()):
        for kind, p in pair.items():
            slope, residual = phase_slopes(p)
            axes[0, col].hist(slope, bins=60, density=True, histtype="step", lw=1.6,
                              color=colors[kind], label=kind)
            axes[1, col].hist(residual, bins=np.linspace(0, 1.5, 61), density=True,
                              histtype="step", lw=1.6, color=colors[kind], label=kind)
        axes[0, col].set_title(f"{hw}: raw phase slope")
        axes[0, col].set_xlabel("rad per subcarrier index")
        axes[1, col].set_title(f"{hw}: phase std after sanitization")
        axes[1, col].set_xlabel("rad")
        axes[0, col].legend()
    fig.tight_layout()
    paths.append(out_dir / "sim_phase.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    return paths


def main(argv: list[str] | None = None) -> int:
    """Compute the comparison, write the figures and print the statistics as JSON."""
    parser = argparse.ArgumentParser(prog="python -m invispose.sim.report", description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    parser.add_argument("--no-bench", action="store_true", help="skip the windows/s measurement")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    stats, data = compare()
    figures = plot(data, args.out)
    result: dict[str, object] = {"comparison": stats, "figures": [p.name for p in figures]}
    if not args.no_bench:
        from invispose.sim.bench import bench_sim

        result["bench"] = bench_sim(10.0)
    text = json.dumps(result, indent=2)
    if args.json is not None:
        args.json.write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
