"""Incremental pcap splitting, resynchronisation and UDP decapsulation."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from invispose.csi.pcap import (
    LINKTYPE_ETHERNET,
    LINKTYPE_IPV4,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_LOOP,
    LINKTYPE_NULL,
    LINKTYPE_RAW,
    PcapRecord,
    PcapStream,
    udp_payload,
)
from invispose.errors import CsiParseError

# --- building captures by hand --------------------------------------------------------


def global_header(
    order: str = "<", *, nano: bool = False, snaplen: int = 65_535, linktype: int = 1
) -> bytes:
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    return struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)


def record(
    data: bytes, sec: int = 1_700_000_000, frac: int = 0, *, order: str = "<", orig: int = 0
) -> bytes:
    return struct.pack(order + "IIII", sec, frac, len(data), orig or len(data)) + data


def ipv4_udp(payload: bytes, *, proto: int = 17, frag: int = 0, udp_len: int = 0) -> bytes:
    udp = struct.pack(">HHHH", 5500, 5501, udp_len or 8 + len(payload), 0) + payload
    ip = struct.pack(
        ">BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, frag, 64, proto, 0,
        bytes([10, 10, 10, 10]), bytes([255] * 4),
    )
    return ip + udp


def ethernet(ip: bytes, *, ethertype: int = 0x0800, vlans: int = 0) -> bytes:
    tags = b"".join(struct.pack(">HH", 0x8100, 7) for _ in range(vlans))
    return b"\xff" * 6 + b"\x02\x00\x00\x00\x00\x01" + tags + struct.pack(">H", ethertype) + ip


def records_of(items: list[PcapRecord | CsiParseError]) -> list[PcapRecord]:
    return [item for item in items if isinstance(item, PcapRecord)]


def errors_of(items: list[PcapRecord | CsiParseError]) -> list[CsiParseError]:
    return [item for item in items if isinstance(item, CsiParseError)]


def read_all(data: bytes, chunks: list[int] | None = None) -> list[PcapRecord | CsiParseError]:
    stream = PcapStream()
    out: list[PcapRecord | CsiParseError] = []
    start = 0
    for stop in [*(chunks or []), len(data)]:
        out += stream.feed(data[start:stop])
        start = stop
    return out + stream.flush()


def record_offsets(data: bytes) -> list[int]:
    offsets: list[int] = []
    at = 24
    while at < len(data):
        offsets.append(at)
        at += 16 + struct.unpack_from("<I", data, at + 8)[0]
    return offsets


@pytest.fixture(scope="module")
def capture(shared_data: Path) -> bytes:
    return (shared_data / "nexmon" / "example_43455c0.pcap").read_bytes()


# --- global header and records ----------------------------------------------------------


@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize("nano", [False, True])
def test_reads_both_byte_orders_and_both_time_resolutions(order: str, nano: bool) -> None:
    frac = 123_456_789 if nano else 123_456
    body = [b"first packet", b"second", b"x" * 300]
    data = global_header(order, nano=nano) + b"".join(
        record(b, 1_700_000_000 + i, frac, order=order) for i, b in enumerate(body)
    )
    items = read_all(data)
    assert not errors_of(items)
    got = records_of(items)
    assert [r.data for r in got] == body
    assert [r.offset for r in got] == [24, 24 + 16 + 12, 24 + 2 * 16 + 12 + 6]
    assert got[1].timestamp_s == pytest.approx(1_700_000_001.123456789, abs=2e-6)


@pytest.mark.parametrize(
    ("head", "message"),
    [
        (b"CSI_DATA,1,2,3" + bytes(20), "not a pcap stream"),
        (b"\x0a\x0d\x0d\x0a" + bytes(40), "pcapng"),
        (struct.pack("<IHHiIII", 0xA1B2C3D4, 1, 0, 0, 0, 65535, 1), "version"),
        (global_header(linktype=127), "link type 127"),
    ],
)
def test_unusable_global_header_raises_until_flush(head: bytes, message: str) -> None:
    stream = PcapStream()
    with pytest.raises(CsiParseError, match=message) as info:
        stream.feed(head)
    assert info.value.offset == 0
    with pytest.raises(CsiParseError, match=message):
        stream.feed(record(b"more"))
    assert stream.flush() == []
    assert records_of(stream.feed(global_header() + record(b"next file"))) != []


def test_magic_is_checked_as_soon_as_four_bytes_arrive() -> None:
    stream = PcapStream()
    assert stream.feed(b"\xd4\xc3") == []
    with pytest.raises(CsiParseError):
        PcapStream().feed(b"GET ")


def test_truncated_global_header_is_reported_at_flush() -> None:
    stream = PcapStream()
    assert stream.feed(global_header()[:10]) == []
    (error,) = errors_of(stream.flush())
    assert "global header" in str(error)


def test_flush_starts_a_new_stream() -> None:
    stream = PcapStream()
    one = global_header() + record(b"a")
    assert [r.data for r in records_of(stream.feed(one) + stream.flush())] == [b"a"]
    two = global_header(">") + record(b"b", order=">")
    assert [r.data for r in records_of(stream.feed(two) + stream.flush())] == [b"b"]


def test_records_cut_at_the_snapshot_length_are_kept() -> None:
    data = global_header(snaplen=64) + b"".join(
        record(bytes([i]) * 64, orig=1500) for i in range(4)
    )
    items = read_all(data, chunks=[30, 100, 101])
    assert not errors_of(items)
    assert [r.data[0] for r in records_of(items)] == [0, 1, 2, 3]
    assert all(r.orig_len == 1500 for r in records_of(items))


def test_random_chunking_gives_the_same_records(capture: bytes) -> None:
    whole = read_all(capture)
    rng = np.random.default_rng(7)
    for _ in range(5):
        cuts = sorted(int(c) for c in rng.integers(0, len(capture), size=40))
        chunked = read_all(capture, chunks=cuts)
        assert [(r.offset, r.data, r.timestamp_s) for r in records_of(chunked)] == [
            (r.offset, r.data, r.timestamp_s) for r in records_of(whole)
        ]
        assert not errors_of(chunked)


# --- resynchronisation -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field_at", "value", "message"),
    [
        (8, 100_000_000, "implausible"),  # captured length absurd
        (8, 500, "does not lead to the next record"),  # captured length shortened
        (4, 2**31, "implausible"),  # sub-second out of range
        (12, 20, "implausible"),  # original length below the captured length
    ],
)
def test_a_corrupt_record_header_costs_only_its_record(
    capture: bytes, field_at: int, value: int, message: str
) -> None:
    offsets = record_offsets(capture)
    bad = bytearray(capture)
    struct.pack_into("<I", bad, offsets[5] + field_at, value)
    for chunks in (None, list(range(37, len(bad), 37))):
        items = read_all(bytes(bad), chunks)
        (error,) = errors_of(items)
        assert message in str(error)
        assert error.offset == offsets[5]
        got = [r.offset for r in records_of(items)]
        assert got == offsets[:5] + offsets[6:]


def test_garbage_between_records_is_skipped(capture: bytes) -> None:
    offsets = record_offsets(capture)
    rng = np.random.default_rng(3)
    garbage = rng.integers(0, 256, size=777, dtype=np.uint8).tobytes()
    cut = offsets[3]
    data = capture[:cut] + garbage + capture[cut:]
    items = read_all(data, chunks=[cut + 100, cut + 5000])
    (error,) = errors_of(items)
    assert error.offset == cut
    got = records_of(items)
    assert len(got) == len(offsets)
    assert [r.data for r in got] == [r.data for r in records_of(read_all(capture))]


def test_truncated_last_record_is_reported(capture: bytes) -> None:
    offsets = record_offsets(capture)
    items = read_all(capture[: offsets[10] + 100])
    (error,) = errors_of(items)
    assert "truncated pcap record (84 of 1084 bytes)" in str(error)
    assert error.offset == offsets[10]
    assert len(records_of(items)) == 10
    (error,) = errors_of(read_all(capture[: offsets[10] + 7]))
    assert "truncated pcap record header (7 of 16 bytes)" in str(error)


# --- decapsulation ---------------------------------------------------------------------

PAYLOAD = b"\x11\x11nexmon payload"


@pytest.mark.parametrize(
    ("linktype", "packet"),
    [
        (LINKTYPE_ETHERNET, ethernet(ipv4_udp(PAYLOAD))),
        (LINKTYPE_ETHERNET, ethernet(ipv4_udp(PAYLOAD), vlans=1)),
        (LINKTYPE_ETHERNET, ethernet(ipv4_udp(PAYLOAD), vlans=2)),
        (LINKTYPE_LINUX_SLL, bytes(14) + b"\x08\x00" + ipv4_udp(PAYLOAD)),
        (LINKTYPE_LINUX_SLL2, b"\x08\x00" + bytes(18) + ipv4_udp(PAYLOAD)),
        (LINKTYPE_RAW, ipv4_udp(PAYLOAD)),
        (LINKTYPE_IPV4, ipv4_udp(PAYLOAD)),
        (LINKTYPE_NULL, struct.pack("<I", 2) + ipv4_udp(PAYLOAD)),
        (LINKTYPE_LOOP, struct.pack(">I", 2) + ipv4_udp(PAYLOAD)),
    ],
)
def test_udp_payload_behind_each_link_type(linktype: int, packet: bytes) -> None:
    udp = udp_payload(packet, linktype)
    assert udp.payload == PAYLOAD
    assert packet[udp.offset : udp.offset + len(PAYLOAD)] == PAYLOAD
    assert (udp.src_port, udp.dst_port) == (5500, 5501)


def test_ethernet_padding_after_the_datagram_is_ignored() -> None:
    packet = ethernet(ipv4_udp(PAYLOAD)) + bytes(4)
    assert udp_payload(packet, LINKTYPE_ETHERNET).payload == PAYLOAD


@pytest.mark.parametrize(
    ("packet", "message"),
    [
        (ethernet(b"\x00" * 28, ethertype=0x0806), "ethertype 0x0806"),
        (ethernet(b"\x60" + bytes(47)), "version 6"),
        (ethernet(ipv4_udp(PAYLOAD, proto=6)), "IP protocol 6"),
        (ethernet(ipv4_udp(PAYLOAD, frag=0x2000)), "fragments"),
        (ethernet(ipv4_udp(PAYLOAD))[:40], "truncated"),
        (ethernet(ipv4_udp(PAYLOAD, udp_len=4)), "UDP length 4"),
        (ethernet(ipv4_udp(PAYLOAD, udp_len=400)), "UDP length 400"),
        (b"\xff" * 10, "too short"),
        (ethernet(b"\x45" + bytes(10)), "too short"),
    ],
)
def test_non_udp_packets_are_refused_with_an_offset(packet: bytes, message: str) -> None:
    with pytest.raises(CsiParseError, match=message) as info:
        udp_payload(packet, LINKTYPE_ETHERNET)
    assert info.value.offset is not None
