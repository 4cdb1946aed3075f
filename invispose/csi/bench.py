"""Parser throughput: frames per second through each reader's incremental API."""

from __future__ import annotations

import time
from pathlib import Path

from invispose.csi.formats import PCAP_MAGICS, detect_format, make_reader

PCAP_GLOBAL_HEADER_BYTES = 24
MIN_BENCH_BYTES = 4 << 20


def _repeat_capture(data: bytes, fmt: str, min_bytes: int) -> bytes:
    """The capture repeated until it is at least ``min_bytes`` long (pcap header once)."""
    header = b""
    if fmt == "nexmon" and data[:4] in PCAP_MAGICS:
        header, data = data[:PCAP_GLOBAL_HEADER_BYTES], data[PCAP_GLOBAL_HEADER_BYTES:]
    if fmt == "esp32" and not data.endswith(b"\n"):
        data += b"\n"
    copies = max(1, -(-min_bytes // max(1, len(data))))
    return header + data * copies


def bench_capture(
    path: Path, *, chipset: str | None = None, min_bytes: int = MIN_BENCH_BYTES, repeats: int = 3
) -> dict[str, float | int | str]:
    """Best-of-``repeats`` frames/s decoding ``path`` (repeated to ``min_bytes``) in one feed."""
    raw = path.read_bytes()
    fmt = detect_format(raw[:4096], path.name.lower())
    data = _repeat_capture(raw, fmt, min_bytes)
    best_s = float("inf")
    frames = 0
    for _ in range(repeats):
        reader = make_reader(fmt, "bench", chipset=chipset)
        start = time.perf_counter()
        frames = len(reader.feed(data)) + len(reader.flush())
        best_s = min(best_s, time.perf_counter() - start)
    return {
        "file": path.name,
        "format": fmt,
        "frames": frames,
        "seconds": round(best_s, 4),
        "frames_per_s": round(frames / best_s, 1),
    }


def bench_csi(data_dir: Path, min_bytes: int = MIN_BENCH_BYTES) -> dict[str, object]:
    """Frames/s per capture in ``data_dir`` and the slowest capture per format."""
    chipsets = {"example_4358.pcap": "bcm4358"}
    results = []
    for path in sorted(data_dir.glob("*/*")):
        if path.suffix not in {".csv", ".pcap", ".dat"}:
            continue
        results.append(bench_capture(path, chipset=chipsets.get(path.name), min_bytes=min_bytes))
    per_format: dict[str, float] = {}
    for row in results:
        fmt = str(row["format"])
        rate = float(row["frames_per_s"])
        per_format[fmt] = min(rate, per_format.get(fmt, rate))
    return {"frames_per_s": per_format, "captures": results}
