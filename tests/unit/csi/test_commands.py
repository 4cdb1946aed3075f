"""`invispose csi info|record` and `bench csi` on real captures and real loopback UDP."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from pathlib import Path

import numpy as np
import pytest

from invispose.cli import main
from invispose.csi.bench import bench_capture
from invispose.csi.commands import record
from invispose.csi.formats import read_capture
from invispose.csi.pcap import PcapRecord, PcapStream, udp_payload
from invispose.csi.sources import CaptureWriter, UdpSource

INFO_KEYS = {
    "format",
    "chipset",
    "frames",
    "bad_records",
    "links",
    "subcarriers",
    "duration_s",
    "rate_hz",
}


@pytest.mark.parametrize(
    ("relpath", "fmt", "frames", "bad", "links"),
    [
        ("esp32/example_100hz_pitraffic.csv", "esp32", 833, 1, {"1x1": 833}),
        ("esp32/example_data.csv", "esp32", 60, 0, {"1x1": 60}),
        ("nexmon/example_43455c0.pcap", "nexmon", 566, 0, {"1x1": 566}),
        ("nexmon/example_4366c0.pcap", "nexmon", 293, 0, {"1x1": 293}),
        ("intel5300/example.dat", "intel5300", 26, 0, {"2x3": 26}),
        ("intel5300/los_100.dat", "intel5300", 1377, 0, {"1x2": 18, "1x3": 1359}),
    ],
)
def test_info_json(
    shared_data: Path,
    capsys: pytest.CaptureFixture[str],
    relpath: str,
    fmt: str,
    frames: int,
    bad: int,
    links: dict[str, int],
) -> None:
    assert main(["csi", "info", "--json", str(shared_data / relpath)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert INFO_KEYS <= set(info)
    assert (info["format"], info["frames"], info["bad_records"]) == (fmt, frames, bad)
    assert info["links"] == links


def test_info_needs_the_chipset_for_4358(
    shared_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(shared_data / "nexmon/example_4358.pcap")
    assert main(["csi", "info", "--json", "--chipset", "bcm4358", path]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["chipset"], info["links"]) == ("bcm4358", {"2x2": 1})


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x00\x01garbage that is no capture" * 10, "unknown CSI capture format"),
        (None, "cannot read"),
    ],
)
def test_info_on_bad_input_is_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes | None, message: str
) -> None:
    path = tmp_path / "capture.bin"
    if content is not None:
        path.write_bytes(content)
    assert main(["csi", "info", str(path)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in captured.err


def test_picoscenes_is_reported_as_unsupported(
    shared_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = shared_data / "picoscenes" / "picoscenes_iwl5300_example.csi"
    assert main(["csi", "info", str(path)]) == 1
    assert "PicoScenes" in capsys.readouterr().err


def _send_to(source: UdpSource, datagrams: list[bytes]) -> asyncio.Task[None]:
    async def sender() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for datagram in datagrams:
                sock.sendto(datagram, ("127.0.0.1", source.port))
                await asyncio.sleep(0.001)

    return asyncio.get_running_loop().create_task(sender())


def _record(source: UdpSource, out: Path, fmt: str, datagrams: list[bytes]) -> dict[str, int]:
    async def scenario() -> dict[str, int]:
        await source.open()
        writer = CaptureWriter(out, fmt)
        sender = _send_to(source, datagrams)
        try:
            return await record(source, writer, duration_s=10.0, max_frames=len(datagrams) - 1)
        finally:
            writer.close()
            await sender

    return asyncio.run(scenario())


def test_record_esp32_udp_replays_identically(shared_data: Path, tmp_path: Path) -> None:
    original = read_capture(shared_data / "esp32/example_data.csv")
    lines = [
        ln
        for ln in (shared_data / "esp32/example_data.csv").read_bytes().splitlines()
        if ln.startswith(b"CSI_DATA")
    ]
    out = tmp_path / "rec.csv"
    stats = _record(UdpSource("127.0.0.1", 0), out, "esp32", lines)
    assert stats["frames"] == len(lines) - 1
    replay = read_capture(out)
    assert replay.format == "esp32" and replay.bad_records == 0
    assert len(replay.frames) >= len(lines) - 1
    for got, want in zip(replay.frames, original.frames, strict=False):
        np.testing.assert_array_equal(got.csi, want.csi)


def test_record_nexmon_udp_writes_a_replayable_pcap(shared_data: Path, tmp_path: Path) -> None:
    stream = PcapStream()
    records = stream.feed((shared_data / "nexmon/example_43455c0.pcap").read_bytes())
    payloads = [
        udp_payload(r.data, stream.linktype).payload for r in records if isinstance(r, PcapRecord)
    ][:50]
    out = tmp_path / "rec.pcap"
    _record(UdpSource("127.0.0.1", 0), out, "nexmon", payloads)
    replay = read_capture(out)
    original = read_capture(shared_data / "nexmon/example_43455c0.pcap")
    assert replay.format == "nexmon" and replay.bad_records == 0
    assert len(replay.frames) >= 49
    for got, want in zip(replay.frames, original.frames, strict=False):
        np.testing.assert_array_equal(got.csi, want.csi)


def test_record_rejects_bad_source_spec(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["csi", "record", "--source", "wifi:1", "--out", str(tmp_path / "x")]) == 1
    assert "bad --source" in capsys.readouterr().err


def test_bench_capture_reports_frames_per_second(shared_data: Path) -> None:
    row = bench_capture(shared_data / "intel5300/example.dat", min_bytes=50_000, repeats=1)
    assert row["format"] == "intel5300"
    assert int(row["frames"]) % 26 == 0 and float(row["frames_per_s"]) > 0


def test_motion_plot_of_real_captures(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "motion.png"
    paths = [
        str(shared_data / "intel5300/los_100.dat"),
        str(shared_data / "nexmon/example_4358.pcap"),
    ]
    assert (
        main(
            ["csi", "motion", *paths, "--plot", str(out), "--chipset", "example_4358.pcap=bcm4358"]
        )
        == 0
    )
    summary = json.loads(capsys.readouterr().out)["captures"]
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert summary["los_100.dat"]["frames"] == 1377
    assert summary["los_100.dat"]["score_max"] > summary["los_100.dat"]["threshold"]
    assert summary["example_4358.pcap"]["frames"] == 1
    assert main(["csi", "motion", paths[0], "--chipset", "nochip"]) == 1


def test_record_esp32_serial_from_a_pseudo_terminal(shared_data: Path, tmp_path: Path) -> None:
    import os
    import threading

    from invispose.csi.sources import SerialSource

    lines = [
        ln + b"\n"
        for ln in (shared_data / "esp32/example_data.csv").read_bytes().splitlines()
        if ln.startswith(b"CSI_DATA")
    ]
    master, slave = os.openpty()
    device = os.ttyname(slave)

    def write_lines() -> None:
        time.sleep(0.5)  # let the recorder open the port
        for line in lines:
            os.write(master, line)
            time.sleep(0.002)

    writer_thread = threading.Thread(target=write_lines, daemon=True)
    writer_thread.start()
    out = tmp_path / "serial.csv"
    capture = CaptureWriter(out, "esp32")
    try:
        stats = asyncio.run(
            record(
                SerialSource(device, 115_200), capture, duration_s=20.0, max_frames=len(lines) - 1
            )
        )
    finally:
        capture.close()
        writer_thread.join()
        os.close(master)
        os.close(slave)
    assert stats["frames"] >= len(lines) - 1 and stats["bad_records"] == 0
    assert len(read_capture(out).frames) >= len(lines) - 1


def test_udp_source_accepts_only_allowed_senders() -> None:
    """Datagrams from outside ``allow_from`` are dropped and counted; allowed ones pass."""

    async def run() -> tuple[list[bytes], int]:
        source = UdpSource("127.0.0.1", 0, allow_from=["127.0.0.2/32", "10.0.0.0/8"])
        await source.open()
        got: list[bytes] = []
        allowed, stranger = (socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in "ab")
        allowed.bind(("127.0.0.2", 0))
        stranger.bind(("127.0.0.1", 0))
        try:
            for i in range(3):
                stranger.sendto(b"spoof %d" % i, ("127.0.0.1", source.port))
                allowed.sendto(b"real %d" % i, ("127.0.0.1", source.port))
            chunks = source.chunks()
            for _ in range(3):  # the three allowed datagrams arrive; a deadline, no sleep
                chunk = await asyncio.wait_for(anext(chunks), timeout=30)
                got.append(chunk.data)
        finally:
            source.close()
            allowed.close()
            stranger.close()
        return got, source.spoofed

    got, spoofed = asyncio.run(run())
    assert got == [b"real 0", b"real 1", b"real 2"]
    assert spoofed == 3


def test_allow_from_must_be_addresses_or_cidr_blocks() -> None:
    from invispose.config import ConfigError, parse_config

    tree = {
        "spaces": [{"id": "lab", "size_m": [6, 5, 3]}],
        "routers": [{
            "id": "esp", "space": "lab", "kind": "esp32-udp",
            "source": {"port": 5566, "allow_from": ["192.168.1.0/24", "the kitchen"]},
            "tx_positions_m": [[0, 0, 1]], "rx_positions_m": [[5, 4, 1]],
        }],
    }
    with pytest.raises(ConfigError) as err:
        parse_config(tree, env={})
    assert "'the kitchen' is not an address or CIDR block" in str(err.value.problems)
