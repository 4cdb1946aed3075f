"""Incremental classic-pcap splitting and UDP decapsulation.

``PcapStream`` turns a pcap byte stream, fed in chunks of any size, into records. It reads
classic pcap in both byte orders, with microsecond (0xA1B2C3D4) or nanosecond
(0xA1B23C4D) timestamps; pcapng is refused with a clear message.

Which lengths are trusted: a record header is plausible when its captured length is
1..``MAX_RECORD_BYTES`` and at most the original length, and its sub-second field is in
range. A plausible record whose captured length equals its original length (the normal,
whole-packet case) is taken as is; a shorter capture is taken only when another plausible
header (or, at ``flush``, the exact end of the stream) follows it.

Resynchronisation: a header that fails these checks, or a record the stream ends inside,
cannot be skipped by its length. It is reported once (offset of its header), then the
stream is scanned forward from the next byte for the first anchor: a plausible header
whose captured length equals its original length or the snapshot length, followed by
another anchor (or by the exact end of the stream at ``flush``). The equality matters: a
position 4 bytes into a real header also reads as a plausible header chain, but there
the "original length" is the packet's first bytes. (A capture whose short records are
cut at other lengths than its snapshot length cannot be resynchronised.)
Scanning starts right after the bad header, so every intact record after it is
recovered, and records already returned are never revisited. A length corrupted into
another plausible value that equals the original length is trusted: its record decodes
as garbage and the misplaced next header starts a resynchronisation.

``udp_payload`` strips the link layer (Ethernet with VLAN tags, Linux cooked SLL and
SLL2, raw IPv4, BSD loopback), IPv4 and UDP from one record, using the IPv4 and UDP
length fields, so Ethernet padding after the datagram is ignored.
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass
from typing import NoReturn

import numpy as np

from invispose.errors import CsiParseError

logger = logging.getLogger(__name__)

GLOBAL_HEADER_BYTES = 24
RECORD_HEADER_BYTES = 16
MAX_RECORD_BYTES = 262_144  # tcpdump's largest snapshot length
SCAN_WINDOW_BYTES = 65_536  # resynchronisation tests this many positions at a time

_MAGICS: dict[bytes, tuple[str, float]] = {  # first 4 bytes -> (byte order, seconds per tick)
    b"\xd4\xc3\xb2\xa1": ("<", 1e-6),
    b"\xa1\xb2\xc3\xd4": (">", 1e-6),
    b"\x4d\x3c\xb2\xa1": ("<", 1e-9),
    b"\xa1\xb2\x3c\x4d": (">", 1e-9),
}
PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"

LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_LINUX_SLL2 = 276
SUPPORTED_LINKTYPES = frozenset(
    {
        LINKTYPE_NULL,
        LINKTYPE_ETHERNET,
        LINKTYPE_RAW,
        LINKTYPE_LOOP,
        LINKTYPE_LINUX_SLL,
        LINKTYPE_IPV4,
        LINKTYPE_LINUX_SLL2,
    }
)

_ETHERTYPE_IPV4 = 0x0800
_VLANS = (0x8100, 0x88A8, 0x9100)
_IPPROTO_UDP = 17
_AF_INET_VALUES = (2, 2 << 24)  # AF_INET in either host byte order


@dataclass(frozen=True, slots=True)
class PcapRecord:
    """One captured packet."""

    offset: int  # stream offset of the record header
    timestamp_s: float  # capture time, seconds since the epoch
    data: bytes  # the captured bytes (incl_len of them)
    orig_len: int  # length of the packet on the wire


@dataclass(frozen=True, slots=True)
class UdpPayload:
    """The UDP payload of one record and where it sits in the record's data."""

    payload: bytes
    offset: int  # offset of the payload within the record's data
    src_port: int
    dst_port: int


class PcapStream:
    """Incremental splitter of a classic pcap byte stream into records."""

    def __init__(self) -> None:
        self.linktype = LINKTYPE_ETHERNET
        self.snaplen = 0
        self._reset()

    def _reset(self) -> None:
        self._buf = bytearray()
        self._pos = 0  # read position in _buf
        self._base = 0  # stream offset of _buf[0]
        self._header_done = False
        self._broken: CsiParseError | None = None
        self._resyncing = False
        self._order = "<"
        self._tick_s = 1e-6
        self._frac_limit = 1_000_000
        self._hdr = struct.Struct("<IIII")

    def feed(self, data: bytes) -> list[PcapRecord | CsiParseError]:
        """Records (and errors for records that are skipped) completed by ``data``.

        Raises ``CsiParseError`` when the global header is not a usable pcap header.
        """
        if self._broken is not None:
            raise self._broken
        self._buf += data
        if not self._header_done and not self._read_global_header():
            return []
        out = self._drain(final=False)
        self._compact()
        return out

    def flush(self) -> list[PcapRecord | CsiParseError]:
        """End of stream: what is left is reported; the stream is then ready for a new file."""
        out: list[PcapRecord | CsiParseError] = []
        if self._broken is None:
            if not self._header_done:
                if self._buf:
                    out.append(
                        CsiParseError(
                            f"truncated pcap global header ({len(self._buf)} of 24 bytes)",
                            offset=0,
                        )
                    )
            else:
                out = self._drain(final=True)
        self._reset()
        return out

    # --- global header ---------------------------------------------------------------

    def _read_global_header(self) -> bool:
        """Parse the global header once it is buffered; raise if it is not pcap."""
        head = bytes(self._buf[:4])
        if len(head) == 4:
            if head == PCAPNG_MAGIC:
                self._fail("pcapng captures are not supported; convert with editcap -F pcap")
            if head not in _MAGICS:
                self._fail(f"not a pcap stream (magic {head.hex()})")
        if len(self._buf) < GLOBAL_HEADER_BYTES:
            return False
        self._order, self._tick_s = _MAGICS[head]
        self._frac_limit = round(1.0 / self._tick_s)
        major, _minor, _zone, _sigfigs, snaplen, network = struct.unpack_from(
            self._order + "HHiIII", self._buf, 4
        )
        if major != 2:
            self._fail(f"unsupported pcap version {major}")
        linktype = network & 0xFFFF
        if linktype not in SUPPORTED_LINKTYPES:
            self._fail(
                f"pcap link type {linktype} is not supported "
                "(Ethernet, Linux cooked SLL/SLL2, raw IPv4, loopback)"
            )
        self.linktype = linktype
        self.snaplen = snaplen
        self._hdr = struct.Struct(self._order + "IIII")
        self._pos = GLOBAL_HEADER_BYTES
        self._header_done = True
        return True

    def _fail(self, message: str) -> NoReturn:
        self._broken = CsiParseError(message, offset=0)
        raise self._broken

    # --- records ---------------------------------------------------------------------

    def _plausible(self, frac: int, incl: int, orig: int) -> bool:
        return 0 < incl <= MAX_RECORD_BYTES and incl <= orig and frac < self._frac_limit

    def _anchor(self, frac: int, incl: int, orig: int) -> bool:
        """Plausible, and a whole packet or one cut at the snapshot length."""
        return self._plausible(frac, incl, orig) and (incl == orig or incl == self.snaplen)

    def _chained(self, nxt: int, *, final: bool, strict: bool) -> bool | None:
        """Whether a plausible header (or the stream's end) is at ``nxt``; None: not known yet."""
        end = len(self._buf)
        if nxt + RECORD_HEADER_BYTES <= end:
            _sec, frac, incl, orig = self._hdr.unpack_from(self._buf, nxt)
            if strict:
                return self._anchor(frac, incl, orig)
            return self._plausible(frac, incl, orig)
        return nxt == end if final else None

    def _drain(self, *, final: bool) -> list[PcapRecord | CsiParseError]:
        """Records buffered from the read position on; at ``final`` the tail is reported."""
        out: list[PcapRecord | CsiParseError] = []
        buf, hdr, end = self._buf, self._hdr, len(self._buf)
        while True:
            if self._resyncing and not self._resync(final=final):
                break
            pos = self._pos
            if end - pos < RECORD_HEADER_BYTES:
                if final and end > pos:
                    out.append(
                        CsiParseError(
                            f"truncated pcap record header ({end - pos} of 16 bytes)",
                            offset=self._base + pos,
                        )
                    )
                    self._pos = end
                break
            sec, frac, incl, orig = hdr.unpack_from(buf, pos)
            stop = pos + RECORD_HEADER_BYTES + incl
            if incl == 0 and orig <= MAX_RECORD_BYTES and frac < self._frac_limit:
                # an empty capture is legal pcap but carries no packet: one bad record,
                # and its length still leads to the next header (no scan needed)
                out.append(CsiParseError("empty pcap record", offset=self._base + pos))
                self._pos = stop
                continue
            if not self._plausible(frac, incl, orig):
                reason = (
                    f"implausible pcap record header (incl_len {incl}, orig_len {orig}, "
                    f"sub-second {frac})"
                )
            elif stop > end:
                if not final:
                    break
                got = end - pos - RECORD_HEADER_BYTES
                reason = f"truncated pcap record ({got} of {incl} bytes)"
            else:
                # incl == orig is the normal, whole-packet case; a shorter capture must be
                # followed by another plausible header before its length is trusted
                chained = True if incl == orig else self._chained(stop, final=final, strict=False)
                if chained is None:
                    break
                if chained:
                    data = bytes(buf[pos + RECORD_HEADER_BYTES : stop])
                    out.append(PcapRecord(self._base + pos, sec + frac * self._tick_s, data, orig))
                    self._pos = stop
                    continue
                reason = f"pcap record length {incl} does not lead to the next record"
            out.append(
                CsiParseError(f"{reason}; scanning for the next record", offset=self._base + pos)
            )
            self._pos = pos + 1
            self._resyncing = True
        return out

    def _resync(self, *, final: bool) -> bool:
        """Move to the next verified record header; False when more data is needed."""
        buf, end = self._buf, len(self._buf)
        start = self._pos
        while end - start >= RECORD_HEADER_BYTES:
            stop = min(end, start + SCAN_WINDOW_BYTES + RECORD_HEADER_BYTES - 1)
            for cand in self._candidates(start, stop):
                nxt = cand + RECORD_HEADER_BYTES + self._hdr.unpack_from(buf, cand)[2]
                chained = self._chained(nxt, final=final, strict=True)
                if chained is None:
                    self._pos = cand  # cannot verify yet: wait here for more bytes
                    return False
                if chained:
                    logger.debug("pcap stream resynchronised after %d bytes", cand - self._pos)
                    self._pos = cand
                    self._resyncing = False
                    return True
            start = stop - RECORD_HEADER_BYTES + 1
        # nothing verified: keep only a tail that could still start a header
        self._pos = end if final else max(self._pos, end - RECORD_HEADER_BYTES + 1)
        return False

    def _candidates(self, start: int, stop: int) -> list[int]:
        """Positions p in [start, stop - 16] whose 16 bytes pass ``_anchor``."""
        raw = np.frombuffer(bytes(self._buf[start:stop]), dtype=np.uint8).astype(np.uint32)
        n = len(raw) - RECORD_HEADER_BYTES + 1  # positions to test
        fields = []
        for at in (4, 8, 12):  # sub-second, incl_len, orig_len
            b = [raw[at + i : at + i + n] for i in range(4)]  # 4 × (n,) u32
            if self._order == ">":
                b.reverse()
            fields.append(b[0] | (b[1] << 8) | (b[2] << 16) | (b[3] << 24))
        frac, incl, orig = fields
        ok = (incl > 0) & (incl <= MAX_RECORD_BYTES) & (incl <= orig) & (frac < self._frac_limit)
        ok &= (incl == orig) | (incl == self.snaplen)
        return [start + int(i) for i in np.flatnonzero(ok)]

    def _compact(self) -> None:
        """Drop consumed bytes so the buffer holds only the unread tail."""
        if self._pos:
            del self._buf[: self._pos]
            self._base += self._pos
            self._pos = 0


def udp_payload(data: bytes, linktype: int) -> UdpPayload:
    """The UDP payload inside one captured packet; raises ``CsiParseError`` (offset in data)."""
    if linktype == LINKTYPE_ETHERNET and data[12:14] == b"\x08\x00":
        at = 14  # the common case, without VLAN tags
    else:
        at = _link_header_bytes(data, linktype)
    if len(data) < at + 20:
        raise CsiParseError("packet too short for an IPv4 header", offset=at)
    version_ihl, _tos, total, _ident, frag, _ttl, proto = struct.unpack_from(">BBHHHBB", data, at)
    if version_ihl >> 4 != 4:
        raise CsiParseError(f"not an IPv4 packet (version {version_ihl >> 4})", offset=at)
    ihl = (version_ihl & 0x0F) * 4
    if ihl < 20 or total < ihl + 8:
        raise CsiParseError(
            f"bad IPv4 header (header {ihl} bytes, total length {total})", offset=at
        )
    if proto != _IPPROTO_UDP:
        raise CsiParseError(f"not a UDP packet (IP protocol {proto})", offset=at + 9)
    if frag & 0x3FFF:
        raise CsiParseError("IPv4 fragments are not reassembled", offset=at + 6)
    if at + total > len(data):
        raise CsiParseError(
            f"IPv4 packet truncated ({len(data) - at} of {total} bytes captured)", offset=at
        )
    udp = at + ihl
    src_port, dst_port, udp_len = struct.unpack_from(">HHH", data, udp)
    if not 8 <= udp_len <= total - ihl:
        raise CsiParseError(f"bad UDP length {udp_len}", offset=udp + 4)
    return UdpPayload(data[udp + 8 : udp + udp_len], udp + 8, src_port, dst_port)


def _link_header_bytes(data: bytes, linktype: int) -> int:
    """Bytes of link-layer header before IPv4; raises when the packet is not IPv4."""
    if linktype in (LINKTYPE_RAW, LINKTYPE_IPV4):
        return 0
    if linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
        if len(data) < 4:
            raise CsiParseError("packet too short for a loopback header", offset=0)
        family = struct.unpack_from("<I", data)[0]
        if family not in _AF_INET_VALUES:
            raise CsiParseError(f"not an IPv4 packet (address family {family})", offset=0)
        return 4
    if linktype == LINKTYPE_LINUX_SLL2:
        at, type_at = 20, 0
    elif linktype == LINKTYPE_LINUX_SLL:
        at, type_at = 16, 14
    else:  # Ethernet, with up to two VLAN tags
        at, type_at = 14, 12
        for _tag in range(2):
            if len(data) < at + 4 or struct.unpack_from(">H", data, type_at)[0] not in _VLANS:
                break
            at, type_at = at + 4, type_at + 4
    if len(data) < at:
        raise CsiParseError("packet too short for its link-layer header", offset=0)
    ethertype = struct.unpack_from(">H", data, type_at)[0]
    if ethertype != _ETHERTYPE_IPV4:
        raise CsiParseError(f"not an IPv4 packet (ethertype 0x{ethertype:04x})", offset=type_at)
    return at
