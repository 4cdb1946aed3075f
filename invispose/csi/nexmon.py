"""Reader for Nexmon CSI (patched Broadcom firmware): pcap files or live UDP payloads.

Each received 802.11 frame yields one UDP payload per receive core and spatial stream:

    current firmware  magic 0x1111 (2) | rssi int8 (1) | frame control (1) | source MAC (6)
    older firmware    magic 0x11111111 (4)                                  | source MAC (6)
    both, then        sequence u16 | core/stream u16 (bits 0-2 core, 3-5 stream)
                      | chanspec u16 | chip version u16 | CSI: n_sub × 4 bytes

(all little endian). A payload starting with four 0x11 bytes is read as the older layout
(no RSSI): the current layout would need an RSSI of +17 dBm. The chip version names the
chip only for 0x0065 and 0x006a (``CHIP_VERSIONS``); otherwise (the bcm4358 sample carries
0xdead) the ``chipset`` option must, and when given it wins. The CSI holds 64 / 128 / 256
bins for 20 / 40 / 80 MHz: int16 real then int16 imaginary on bcm43455c0 and bcm4339, one
packed floating-point word per bin on bcm4358 and bcm4366c0 (``unpack_float``, which keeps
the firmware tools' integer scaling: per packet, the largest component gets 11 bits).

Frames: the payloads of one received frame (same sequence number and source) are grouped
into one ``CsiFrame`` with csi (n_tx = spatial streams, n_rx = cores, n_sub); a group ends
when a payload of another frame arrives, when a core/stream pair repeats (captures whose
sequence number stays 0, as the bcm43455c0 sample's, give one frame per payload), when
it holds every core/stream pair the previous complete group had (no waiting on live
links), or at ``flush``. A pair missing from a group (a lost payload) is left as zeros
and counted in ``incomplete_frames``. A frame's RSSI is its first payload's.

Bins arrive in FFT order (0 … n/2-1, then -n/2 … -1); frames hold them fftshifted, in
ascending subcarrier order, with ``subcarriers`` = -n/2 … n/2-1. All bins are kept (nulls
and pilots included). ``csi_buff`` of nexmon_csi's MATLAB script is in FFT order:
``csi_buff[k] == np.fft.ifftshift(frame.csi[0, 0])``.

Times: ``device_time_s`` is the pcap record time (the payload carries no device clock; in
the ``udp`` container it is the arrival time). ``arrival_time_s`` is the argument when
given, otherwise the pcap record time for files and ``time.time()`` for UDP. ``channel``
is the centre channel of the whole bandwidth as the chanspec states it (42 for 36/80).
"""

from __future__ import annotations

import functools
import logging
import math
import struct
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from invispose.csi.base import CsiReader
from invispose.csi.pcap import PcapRecord, PcapStream, udp_payload
from invispose.errors import ConfigError, CsiParseError
from invispose.schemas import CsiFrame

logger = logging.getLogger(__name__)

CHIPSETS = ("bcm43455c0", "bcm4339", "bcm4358", "bcm4366c0")
CONTAINERS = ("pcap", "udp")
#: chip version field -> chipset, for the values that identify the chip reliably
CHIP_VERSIONS = {0x0065: "bcm43455c0", 0x006A: "bcm4366c0"}
#: packed-float layouts: chipset -> (mantissa bits incl. sign, exponent bits)
FLOAT_LAYOUTS = {"bcm4358": (9, 5), "bcm4366c0": (12, 6)}
HEADER_BYTES = 18
BANDWIDTH_FOR_BINS = {64: 20, 128: 40, 256: 80}
_CHANSPEC_BANDWIDTHS = {2: 20, 3: 40, 4: 80, 5: 160}  # chanspec bits 11-13
_MAGIC_OLD = b"\x11\x11\x11\x11"
_MAGIC_NEW = b"\x11\x11"
_FIELDS = struct.Struct("<6sHHHH")  # MAC, sequence, core/stream, chanspec, chip version


def unpack_float(
    words: npt.NDArray[np.uint32], *, nman: int, nexp: int, nbits: int = 10
) -> npt.NDArray[np.int32]:
    """Decode Broadcom packed-float CSI words to integer (real, imag) pairs, shape (n, 2).

    Each word holds, from bit 0: a two's-complement exponent of ``nexp`` bits, the
    imaginary magnitude (``nman - 1`` bits) and sign, the real magnitude and sign. The
    packet is scaled as a whole so that its largest component's top bit lands on bit
    ``nbits``; bits shifted out below the point are dropped (truncation toward zero).
    """
    if not 2 <= nman <= 13 or not 1 <= nexp <= 8 or nexp + 2 * nman > 32:
        raise ValueError(f"unsupported packed-float layout (nman {nman}, nexp {nexp})")
    return _unpack_float32(np.asarray(words, dtype=np.uint32), nman, nexp, nbits).astype(np.int32)


def _unpack_float32(
    h: npt.NDArray[np.uint32], nman: int, nexp: int, nbits: int
) -> npt.NDArray[np.float32]:
    """``unpack_float`` as float32 (n, 2); every value is an exact integer.

    The firmware tools shift each component by its exponent plus a per-packet shift
    (``nbits`` minus the largest exponent + top bit). That equals taking the exact value
    ±mantissa·2^exponent, scaling the packet by 2^(nbits - floor(log2(peak))), and
    truncating toward zero; float32 holds every intermediate exactly.
    """
    words = h.astype(np.intp)  # (n,) indices into the lookup tables below
    fields = (words[:, None] >> np.array([nexp + nman, nexp])) & ((1 << nman) - 1)  # (n, 2)
    values: npt.NDArray[np.float32] = _signed_mantissas(nman)[fields]  # (n, 2) real, imag
    values *= _exponent_scales(nexp)[words & ((1 << nexp) - 1)][:, None]
    peak = float(np.abs(values).max()) if len(values) else 0.0
    if peak > 0.0:
        maxbit = math.frexp(peak)[1] - 1  # floor(log2(peak))
        values *= np.float32(2.0 ** (nbits - maxbit))
        np.trunc(values, out=values)
    return values


@functools.cache
def _signed_mantissas(nman: int) -> npt.NDArray[np.float32]:
    """Mantissa field (sign bit on top, magnitude below) -> its signed value."""
    field = np.arange(1 << nman)
    magnitude = field & ((1 << (nman - 1)) - 1)
    return np.where(field >> (nman - 1), -magnitude, magnitude).astype(np.float32)


@functools.cache
def _exponent_scales(nexp: int) -> npt.NDArray[np.float32]:
    """Exponent field (two's complement) -> 2**exponent."""
    field = np.arange(1 << nexp)
    exponent = np.where(field >= 1 << (nexp - 1), field - (1 << nexp), field)
    return np.ldexp(np.float32(1.0), exponent).astype(np.float32)


@dataclass(slots=True)
class _Payload:
    """One decoded UDP payload: one core and spatial stream of one received frame."""

    seq: int
    mac: str
    core: int
    stream: int
    rssi_dbm: float | None
    channel: int
    chipset: str
    csi: npt.NDArray[np.complex64]  # (n_sub,) fftshifted
    device_time_s: float
    arrival_time_s: float


class NexmonReader(CsiReader):
    """Incremental decoder of Nexmon CSI from a pcap stream or from UDP payloads."""

    format = "nexmon"

    def __init__(
        self, router_id: str = "", *, chipset: str | None = None, container: str = "pcap"
    ) -> None:
        if chipset is not None and chipset not in CHIPSETS:
            raise ConfigError(f"unknown Nexmon chipset {chipset!r} (known: {', '.join(CHIPSETS)})")
        if container not in CONTAINERS:
            raise ConfigError(f"unknown Nexmon container {container!r} (use 'pcap' or 'udp')")
        super().__init__(router_id, chipset=chipset)
        self.container = container
        self.incomplete_frames = 0
        self._pcap = PcapStream()
        self._group: list[_Payload] = []
        self._keys: set[tuple[int, int]] = set()  # (core, stream) pairs in the open group
        self._macs: dict[bytes, str] = {}
        self._expected: frozenset[tuple[int, int]] = frozenset()
        self._odd_specs: set[int] = set()
        self._arrival_time_s: float | None = None  # last one given to feed (pcap container)

    def feed(self, data: bytes, arrival_time_s: float | None = None) -> list[CsiFrame]:
        """Decode a chunk of the pcap stream, or one UDP payload in the ``udp`` container."""
        if self.container == "udp":
            return self._feed_payload(bytes(data), 0, None, self._now(arrival_time_s))
        self._arrival_time_s = arrival_time_s
        frames: list[CsiFrame] = []
        for item in self._pcap.feed(data):
            frames.extend(self._on_record(item, arrival_time_s))
        return frames

    def feed_datagram(
        self, datagram: bytes, arrival_time_s: float | None = None
    ) -> list[CsiFrame]:
        """One UDP payload (``udp``) or one whole pcap file (``pcap``).

        In the ``udp`` container the frame of the latest payloads stays open until a
        payload of another frame arrives (or its cores are complete, or ``flush``).
        """
        if self.container == "udp":
            return self.feed(datagram, arrival_time_s)
        return super().feed_datagram(datagram, arrival_time_s)

    def flush(self) -> list[CsiFrame]:
        """End of stream: report what is truncated and emit the open frame."""
        frames: list[CsiFrame] = []
        if self.container == "pcap":
            for item in self._pcap.flush():
                frames.extend(self._on_record(item, self._arrival_time_s))
            self._arrival_time_s = None
        if self._group:
            frames.append(self._close_group())
        return frames

    # --- records and payloads ----------------------------------------------------------

    def _on_record(
        self, item: PcapRecord | CsiParseError, arrival_time_s: float | None
    ) -> list[CsiFrame]:
        if isinstance(item, CsiParseError):
            self._reject(item)
            return []
        data_at = item.offset + 16
        try:
            udp = udp_payload(item.data, self._pcap.linktype)
        except CsiParseError as exc:
            self._reject(CsiParseError(exc.reason, offset=data_at + (exc.offset or 0)))
            return []
        arrival = item.timestamp_s if arrival_time_s is None else arrival_time_s
        return self._feed_payload(udp.payload, data_at + udp.offset, item.timestamp_s, arrival)

    def _feed_payload(
        self, payload: bytes, offset: int, device_time_s: float | None, arrival_time_s: float
    ) -> list[CsiFrame]:
        try:
            decoded = self._decode(payload, offset, device_time_s, arrival_time_s)
        except CsiParseError as exc:
            self._reject(exc)
            return []
        except (ValueError, struct.error) as exc:  # defensive: never escapes the reader
            self._reject(CsiParseError(f"undecodable Nexmon payload ({exc})", offset=offset))
            return []
        return self._add(decoded)

    def _decode(
        self, p: bytes, offset: int, device_time_s: float | None, arrival_time_s: float
    ) -> _Payload:
        if len(p) < HEADER_BYTES:
            raise CsiParseError(f"Nexmon payload too short ({len(p)} bytes)", offset=offset)
        rssi_dbm: float | None = None
        if p[:4] != _MAGIC_OLD:
            if p[:2] != _MAGIC_NEW:
                raise CsiParseError(f"bad Nexmon magic 0x{p[:2].hex()}", offset=offset)
            rssi_dbm = float(p[2] - 256 if p[2] > 127 else p[2])
        mac, seq, core_stream, chanspec, chip_version = _FIELDS.unpack_from(p, 4)
        n_sub = (len(p) - HEADER_BYTES) // 4
        if n_sub not in BANDWIDTH_FOR_BINS or len(p) != HEADER_BYTES + 4 * n_sub:
            raise CsiParseError(
                f"Nexmon CSI of {len(p) - HEADER_BYTES} bytes (expected 256, 512 or 1024)",
                offset=offset + HEADER_BYTES,
            )
        chipset = self.chipset or CHIP_VERSIONS.get(chip_version)
        if chipset is None:
            raise CsiParseError(
                f"unknown Nexmon chip version 0x{chip_version:04x}: name the chipset "
                f"(chipset option, one of {', '.join(CHIPSETS)})",
                offset=offset + 16,
            )
        spec_bw = _CHANSPEC_BANDWIDTHS.get((chanspec >> 11) & 7)
        if spec_bw not in (None, BANDWIDTH_FOR_BINS[n_sub]) and chanspec not in self._odd_specs:
            self._odd_specs.add(chanspec)  # log once per chanspec: the CSI length decides
            logger.info("chanspec 0x%04x says %s MHz, the CSI %d bins", chanspec, spec_bw, n_sub)
        if chipset in FLOAT_LAYOUTS:
            nman, nexp = FLOAT_LAYOUTS[chipset]
            words = np.frombuffer(p, dtype="<u4", count=n_sub, offset=HEADER_BYTES)
            pairs = _unpack_float32(words, nman, nexp, 10)  # (n_sub, 2) float32
        else:
            ints = np.frombuffer(p, dtype="<i2", count=2 * n_sub, offset=HEADER_BYTES)
            pairs = ints.astype(np.float32)  # (2 n_sub,) real, imag interleaved
        bins = pairs.view(np.complex64).reshape(n_sub)  # FFT order
        half = n_sub // 2
        csi = np.concatenate((bins[half:], bins[:half]))  # (n_sub,) ascending subcarrier
        return _Payload(
            seq=seq,
            mac=self._mac_text(mac),
            core=core_stream & 7,
            stream=(core_stream >> 3) & 7,
            rssi_dbm=rssi_dbm,
            channel=chanspec & 0xFF,
            chipset=chipset,
            csi=csi,
            device_time_s=arrival_time_s if device_time_s is None else device_time_s,
            arrival_time_s=arrival_time_s,
        )

    def _mac_text(self, mac: bytes) -> str:
        text = self._macs.get(mac)
        if text is None:
            if len(self._macs) >= 4096:  # bound the cache against spoofed sources
                self._macs.clear()
            text = self._macs[mac] = mac.hex(":")
        return text

    # --- grouping payloads into frames ---------------------------------------------------

    def _add(self, payload: _Payload) -> list[CsiFrame]:
        """Put one payload in the open group; return the frames this closes."""
        frames: list[CsiFrame] = []
        key = (payload.core, payload.stream)
        if self._group:
            first = self._group[0]
            if (
                key in self._keys
                or payload.seq != first.seq
                or payload.mac != first.mac
                or len(payload.csi) != len(first.csi)
                or payload.chipset != first.chipset
            ):
                frames.append(self._close_group())
        self._group.append(payload)
        self._keys.add(key)
        if self._expected and self._expected <= self._keys:
            frames.append(self._close_group())
        return frames

    def _close_group(self) -> CsiFrame:
        """The open group as one frame (the group must not be empty)."""
        group, keys = self._group, frozenset(self._keys)
        self._group, self._keys = [], set()
        if len(keys) >= len(self._expected):
            self._expected = keys
        first = group[0]
        n_sub = len(first.csi)
        if len(group) == 1:
            csi = first.csi.reshape(1, 1, n_sub)
        else:
            streams = sorted({g.stream for g in group})
            cores = sorted({g.core for g in group})
            csi = np.zeros((len(streams), len(cores), n_sub), dtype=np.complex64)
            for g in group:
                csi[streams.index(g.stream), cores.index(g.core)] = g.csi
            if len(group) < len(streams) * len(cores):
                self.incomplete_frames += 1
                logger.debug("Nexmon frame seq %d misses payloads (%s)", first.seq, sorted(keys))
        self.frames_decoded += 1
        return CsiFrame(
            router_id=self.router_id,
            seq=first.seq,
            device_time_s=first.device_time_s,
            arrival_time_s=first.arrival_time_s,
            csi=csi,  # (n_tx, n_rx, n_sub) complex64
            subcarriers=np.arange(-(n_sub // 2), n_sub // 2, dtype=np.int16),
            rssi_dbm=first.rssi_dbm,
            channel=first.channel,
            bandwidth_mhz=BANDWIDTH_FOR_BINS[n_sub],
            format=self.format,
            chipset=first.chipset,
            source_mac=first.mac,
        )
