"""`invispose csi ...`: inspect, record and analyse CSI captures."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from pathlib import Path

from invispose.csi.formats import capture_summary, make_reader, read_capture
from invispose.csi.sources import CaptureWriter, SerialSource, UdpSource
from invispose.errors import InvisPoseError
from invispose.output import print_json

SOURCE_FORMATS = {"esp32-udp": "esp32", "esp32-serial": "esp32", "nexmon-udp": "nexmon"}


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `csi` command group."""
    csi = subparsers.add_parser("csi", help="inspect, record and analyse CSI captures")
    sub = csi.add_subparsers(dest="csi_command", required=True)

    info = sub.add_parser("info", help="summarise a capture file")
    info.add_argument("path", type=Path)
    info.add_argument("--json", action="store_true", help="print JSON")
    info.add_argument("--format", dest="fmt", choices=["esp32", "nexmon", "intel5300"])
    info.add_argument("--chipset", help="chip, for captures that do not name it (bcm4358)")
    info.set_defaults(func=cmd_info)

    record = sub.add_parser("record", help="record a live source to a replayable capture")
    record.add_argument(
        "--source", required=True, help="esp32-udp:PORT | nexmon-udp:PORT | esp32-serial:DEVICE"
    )
    record.add_argument("--out", required=True, type=Path, help="capture file to write")
    record.add_argument("--duration", type=float, default=None, help="stop after S seconds")
    record.add_argument("--frames", type=int, default=None, help="stop after N decoded frames")
    record.add_argument("--baudrate", type=int, default=1_500_000, help="serial speed")
    record.set_defaults(func=cmd_record)

    motion = sub.add_parser("motion", help="plot the model-free motion score of captures")
    motion.add_argument("paths", nargs="+", type=Path)
    motion.add_argument("--plot", type=Path, default=Path("docs/motion.png"))
    motion.add_argument(
        "--chipset",
        action="append",
        default=[],
        metavar="FILE=CHIP",
        help="chip of a capture that does not name it, e.g. example_4358.pcap=bcm4358",
    )
    motion.set_defaults(func=cmd_motion)


def cmd_info(args: argparse.Namespace) -> int:
    """Print format, chipset, frame counts, link shapes, duration and rate."""
    summary = capture_summary(read_capture(args.path, fmt=args.fmt, chipset=args.chipset))
    if args.json:
        print_json(summary)
        return 0
    for key, value in summary.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}: {v}" for k, v in value.items()) or "-"
        print(f"{key:12} {value}")
    return 0


def parse_source(spec: str, baudrate: int = 1_500_000) -> tuple[str, UdpSource | SerialSource]:
    """Turn `esp32-udp:5566` (and friends) into a capture format and a source."""
    kind, _, arg = spec.partition(":")
    if kind not in SOURCE_FORMATS or not arg:
        raise InvisPoseError(
            f"bad --source {spec!r}: use esp32-udp:PORT, nexmon-udp:PORT or esp32-serial:DEVICE"
        )
    if kind == "esp32-serial":
        return SOURCE_FORMATS[kind], SerialSource(arg, baudrate)
    host, _, port = arg.rpartition(":")
    if not port.isdigit():
        raise InvisPoseError(f"bad port in --source {spec!r}")
    return SOURCE_FORMATS[kind], UdpSource(host or "0.0.0.0", int(port))


async def record(
    source: UdpSource | SerialSource,
    writer: CaptureWriter,
    *,
    duration_s: float | None,
    max_frames: int | None,
    progress_s: float = 1.0,
) -> dict[str, int]:
    """Copy a live source into ``writer`` until the duration or frame count is reached."""
    options = {"container": "udp"} if writer.fmt == "nexmon" else {}
    reader = make_reader(writer.fmt, "record", **options)
    stats = {"frames": 0, "bad_records": 0, "bytes": 0}
    start = time.monotonic()

    async def pump() -> None:
        last = start
        async for chunk in source.chunks():
            writer.write(chunk)
            if chunk.datagram:
                decoded = reader.feed_datagram(chunk.data, chunk.arrival_time_s)
            else:
                decoded = reader.feed(chunk.data, chunk.arrival_time_s)
            stats["frames"] += len(decoded)
            now = time.monotonic()
            if now - last >= progress_s:
                last = now
                print(
                    f"\rrecording {now - start:6.1f} s  {stats['frames']} frames  "
                    f"{reader.bad_records} bad",
                    end="",
                    file=sys.stderr,
                    flush=True,
                )
            if max_frames is not None and stats["frames"] >= max_frames:
                return

    try:
        await asyncio.wait_for(pump(), timeout=duration_s)
    except TimeoutError:
        pass  # the requested duration is over
    finally:
        source.close()
        print(file=sys.stderr)
    stats["bad_records"] = reader.bad_records
    stats["bytes"] = writer.bytes
    return stats


def cmd_record(args: argparse.Namespace) -> int:
    """Record a live source until Ctrl-C, --duration or --frames."""
    fmt, source = parse_source(args.source, args.baudrate)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    writer = CaptureWriter(args.out, fmt)
    stats: dict[str, int] = {}
    try:
        with contextlib.suppress(KeyboardInterrupt):
            stats = asyncio.run(
                record(source, writer, duration_s=args.duration, max_frames=args.frames)
            )
    finally:
        writer.close()
    print(json.dumps({"out": str(args.out), "format": fmt, **stats}))
    return 0


def cmd_motion(args: argparse.Namespace) -> int:
    """Plot the motion score of each capture into one PNG."""
    from invispose.csi.motion_report import plot_motion

    chipsets = {}
    for item in args.chipset:
        name, sep, chip = item.partition("=")
        if not sep or not chip:
            raise InvisPoseError(f"bad --chipset {item!r}: use FILE=CHIP")
        chipsets[name] = chip
    summary = plot_motion(list(args.paths), args.plot, chipsets=chipsets)
    print(json.dumps({"plot": str(args.plot), "captures": summary}, default=str))
    return 0
