"""The registry of CSI formats, format detection, and whole-capture reading.

This is the one place where reader classes are registered; everything else (the CLI,
router sources, the simulator's round-trip tests) asks here for a reader by name.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from invispose.csi.base import CsiReader
from invispose.csi.esp32 import Esp32Reader
from invispose.csi.intel5300 import Intel5300Reader
from invispose.csi.nexmon import NexmonReader
from invispose.errors import CsiParseError, UnknownFormatError
from invispose.schemas import CsiFrame

READERS: dict[str, type[CsiReader]] = {
    "esp32": Esp32Reader,
    "nexmon": NexmonReader,
    "intel5300": Intel5300Reader,
}

PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1",
    b"\xa1\xb2\xc3\xd4",
    b"\x4d\x3c\xb2\xa1",
    b"\xa1\xb2\x3c\x4d",
}
READ_CHUNK_BYTES = 1 << 20


@dataclass(slots=True)
class CaptureResult:
    """Every frame of a capture file, with what was skipped."""

    path: Path
    format: str
    chipset: str | None
    frames: list[CsiFrame]
    bad_records: int
    errors: list[CsiParseError] = field(default_factory=list)


def detect_format(head: bytes, name: str = "") -> str:
    """Name the format of a capture from its first bytes (and file name as a hint)."""
    if head[:4] in PCAP_MAGICS:
        return "nexmon"
    if head[:4] == b"\x0a\x0d\x0d\x0a":
        raise UnknownFormatError("pcapng captures are not supported; convert with editcap -F pcap")
    if name.endswith(".csi"):
        raise UnknownFormatError("PicoScenes .csi captures are not supported yet")
    text = head[:4096]
    if b"CSI_DATA" in text or text.lstrip().startswith(b"type,"):
        return "esp32"
    if len(head) >= 3:
        field_len = int.from_bytes(head[:2], "big")
        if head[2] == 0xBB and 20 <= field_len <= 2000:
            return "intel5300"
        if name.endswith(".dat") and 1 <= field_len <= 2000:
            return "intel5300"
    raise UnknownFormatError(
        "unknown CSI capture format (expected ESP32 CSV text, a Nexmon pcap or an Intel 5300 .dat)"
    )


def make_reader(
    fmt: str, router_id: str = "", *, chipset: str | None = None, **options: object
) -> CsiReader:
    """Build a reader for a registered format name."""
    try:
        cls = READERS[fmt]
    except KeyError:
        known = ", ".join(sorted(READERS))
        raise UnknownFormatError(f"unknown CSI format {fmt!r} (known: {known})") from None
    return cls(router_id, chipset=chipset, **options)


def read_capture(
    path: str | os.PathLike[str],
    *,
    fmt: str | None = None,
    chipset: str | None = None,
    router_id: str = "",
) -> CaptureResult:
    """Read a whole capture file through the incremental reader of its format."""
    file_path = Path(path)
    try:
        with file_path.open("rb") as fh:
            head = fh.read(4096)
            name = file_path.name.lower()
            fmt = fmt or detect_format(head, name)
            reader = make_reader(fmt, router_id or file_path.stem, chipset=chipset)
            frames = reader.feed(head)
            while chunk := fh.read(READ_CHUNK_BYTES):
                frames.extend(reader.feed(chunk))
    except OSError as exc:
        raise CsiParseError(f"cannot read {file_path}: {exc.strerror or exc}") from exc
    frames.extend(reader.flush())
    chip = reader.chipset or next((f.chipset for f in frames if f.chipset), None)
    return CaptureResult(
        path=file_path,
        format=fmt,
        chipset=chip,
        frames=frames,
        bad_records=reader.bad_records,
        errors=list(reader.errors),
    )


def capture_summary(result: CaptureResult) -> dict[str, object]:
    """What `invispose csi info` reports about a capture."""
    frames = result.frames
    links = Counter(f"{f.shape[0]}x{f.shape[1]}" for f in frames)
    subcarriers = Counter(f.shape[2] for f in frames)
    times = np.array([f.device_time_s for f in frames], dtype=np.float64)
    duration_s = float(times.max() - times.min()) if len(times) > 1 else 0.0
    steps = np.diff(np.sort(times))
    steps = steps[steps > 0]
    rate_hz = float(1.0 / np.median(steps)) if len(steps) else 0.0
    return {
        "path": str(result.path),
        "format": result.format,
        "chipset": result.chipset,
        "frames": len(frames),
        "bad_records": result.bad_records,
        "links": dict(sorted(links.items())),
        "subcarriers": {str(k): v for k, v in sorted(subcarriers.items())},
        "duration_s": round(duration_s, 6),
        "rate_hz": round(rate_hz, 3),
    }
