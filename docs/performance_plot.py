"""Table and plot of `invispose bench pipeline` cases (docs/PERFORMANCE.md).

Usage: .venv/bin/python docs/performance_plot.py docs/performance.json
Prints the markdown table and writes docs/performance.png beside the JSON.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def table(cases: list[dict]) -> str:
    lines = [
        "| routers | clients | offered windows/s | nominal windows/s | p50 / p95 / p99 ms "
        "| saturated windows/s | batch | efficiency | WS frames dropped | CPU % |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in cases:
        lines.append(
            f"| {c['routers']} | {c['clients']} | {20 * c['routers']} "
            f"| {c['nominal_windows_per_s']} | {c['p50_ms']:.0f} / {c['p95_ms']:.0f} / "
            f"{c['p99_ms']:.0f} | {c['windows_per_s']} | {c['batch_size']} "
            f"| {c['efficiency']} | {c['drops'].get('websocket_frames', 0)} "
            f"| {c['cpu_percent']} |"
        )
    return "\n".join(lines)


def plot(cases: list[dict], out: Path) -> None:
    fig, (ax_lat, ax_rate) = plt.subplots(1, 2, figsize=(11, 4))
    for clients in sorted({c["clients"] for c in cases}):
        rows = sorted((c for c in cases if c["clients"] == clients), key=lambda c: c["routers"])
        r = [c["routers"] for c in rows]
        ax_lat.plot(r, [c["p99_ms"] for c in rows], "o-", label=f"{clients} clients, p99")
        ax_rate.plot(r, [c["nominal_windows_per_s"] for c in rows], "o-",
                     label=f"{clients} clients")
    routers = sorted({c["routers"] for c in cases})
    ax_lat.axhline(50, color="grey", ls="--", lw=1, label="goal at 8 routers (50 ms)")
    ax_lat.set(xscale="log", yscale="log", xlabel="routers", ylabel="newest packet → WS send, ms",
               title="latency at the nominal rate (20 windows/s per router)")
    ax_rate.plot(routers, [20 * r for r in routers], "k--", lw=1, label="offered")
    ax_rate.set(xscale="log", yscale="log", xlabel="routers", ylabel="windows/s processed",
                title="throughput at the nominal rate")
    for ax in (ax_lat, ax_rate):
        ax.set_xticks(routers, [str(r) for r in routers])
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    path = Path(sys.argv[1])
    doc = json.loads(path.read_text())
    rows = doc["cases"] if "cases" in doc else [doc]
    cases = [c for c in rows if "error" not in c]
    print(table(cases))
    for c in rows:
        if "error" in c:
            print(f"\n{c['routers']} routers, {c['clients']} clients: {c['error']}")
    plot(cases, path.with_suffix(".png"))
