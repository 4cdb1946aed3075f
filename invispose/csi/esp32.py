"""ESP32 CSI text lines (ESP32-CSI-Tool, esp-csi ``csi_recv``, ESP32-C5/C6) to ``CsiFrame``s.

Dialects, all ``CSI_DATA,...`` lines ending in a list of values: ESP32-CSI-Tool
(``...,real_timestamp,len,[v0 v1 ... ]``, 25 fields before the list, no sequence number
and no ``first_word``), esp-csi ``csi_recv`` (``...,len,first_word,"[d0,d1,...]"``, 24)
and the ESP32-C5/C6 short form (14). A ``type,...`` header line names the columns for the
lines that match its field count; otherwise the field count picks the dialect. Headers
and console log lines are skipped silently; a line holding ``CSI_DATA,`` that cannot be
decoded is a bad record. Junk before ``CSI_DATA,`` (serial noise, a lost newline) is cut.

Values are int8 (imaginary, real) pairs, one per FFT bin; 0..255 prints are the same
bytes. ``len`` must equal the value count, except that ESP32-CSI-Tool may print only the
128 LLTF values of a longer buffer (``len`` still gives the buffer size).

Bins map to subcarriers by ESP-IDF's CSI table: buffer order LLTF, HT-LTF, STBC-HT-LTF,
each in its own bin order (0..31 then -32..-1 without a secondary channel). A frame
carries one training field: the HT-LTF when present (it covers the HT data subcarriers
-28..28, the LLTF only -26..26; the STBC copy is not used), else the LLTF, with all its
bins (nulls and guards too) sorted by subcarrier index. A 20 MHz packet on a 40 MHz
channel is indexed from its own (primary) channel centre, so 20 MHz frames span -32..31;
HT40 frames span -64..63 (-60..60 with STBC) around the 40 MHz centre. The short dialect
has no PHY fields: its layout follows from ``len`` (128/256/384 as without a secondary
channel, or the ESP32-C5 lengths).

Zeroed bins: DC (no channel there; with STBC the chip stores a cyclic-shift angle in it),
and the first two bins when ``first_word`` (the driver's ``first_word_invalid``) is
non-zero or the dialect has no such flag (ESP32-CSI-Tool runs on the original ESP32,
whose first word is garbage). Those are subcarriers 0 and +1 without a secondary channel
(+1 is then a data-subcarrier hole in every packet), else the guards -32 and -31.
``local_timestamp`` (µs, 32 bits) is unwrapped across lines into ``device_time_s``;
``agc_db`` stays None (``agc_gain``/``fft_gain`` are register codes, not dB).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt

from invispose.csi.base import CsiReader
from invispose.errors import CsiParseError
from invispose.schemas import CsiFrame

logger = logging.getLogger(__name__)

#: longest partial line kept while waiting for its newline (612 values print in < 4 KiB)
MAX_LINE_BYTES = 16_384
#: CSI lines decoded together in one vectorised pass (bounds temporary memory)
BATCH_LINES = 2048
TIMESTAMP_WRAP_US = 1 << 32
LLTF_ONLY_VALUES = 128

_MARK = b"CSI_DATA,"
_RX_CTRL = (
    "rssi,rate,sig_mode,mcs,bandwidth,smoothing,not_sounding,aggregation,stbc,fec_coding,sgi,"
    "noise_floor,ampdu_cnt,channel,secondary_channel,local_timestamp,ant,sig_len,rx_state"
)
_CSI_TOOL_HEADER = f"type,role,mac,{_RX_CTRL},real_time_set,real_timestamp,len,CSI_DATA"
_ESP_CSI_HEADER = f"type,id,mac,{_RX_CTRL},len,first_word,data"
_SHORT_HEADER = (
    "type,seq,mac,rssi,rate,noise_floor,fft_gain,agc_gain,channel,local_timestamp,sig_len,"
    "rx_state,len,first_word,data"
)

Ranges = tuple[tuple[int, int], ...]  # inclusive subcarrier index runs, in buffer order
_A: Ranges = ((0, 31), (-32, -1))
_LOW: Ranges = ((0, 63),)
_HIGH: Ranges = ((-64, -1),)
_HT40: Ranges = ((0, 63), (-64, -1))
_HT40_STBC: Ranges = ((0, 60), (-60, -1))
# ESP32 / S2 / S3 / C3: (secondary channel, HT, 40 MHz, STBC) -> training fields in order
_CLASSIC: dict[tuple[int, bool, bool, bool], tuple[Ranges, ...]] = {
    (0, False, False, False): (_A,),
    (0, True, False, False): (_A, _A),
    (0, True, False, True): (_A, _A, _A),
    (2, False, False, False): (_LOW,),
    (2, True, False, False): (_LOW, _LOW),
    (2, True, False, True): (_LOW, ((0, 62),), ((0, 62),)),
    (2, True, True, False): (_LOW, _HT40),
    (2, True, True, True): (_LOW, _HT40_STBC, _HT40_STBC),
    (1, False, False, False): (_HIGH,),
    (1, True, False, False): (_HIGH, _HIGH),
    (1, True, False, True): (_HIGH, ((-62, -1),), ((-62, -1),)),
    (1, True, True, False): (_HIGH, _HT40),
    (1, True, True, True): (_HIGH, _HT40_STBC, _HT40_STBC),
}
# layout from the value count alone: (fields in order, field emitted, 40 MHz)
_C5_HT20: Ranges = ((0, 28), (-28, -1))
_C5_HT40: Ranges = ((0, 58), (-58, -1))
_BY_LENGTH: dict[int, tuple[tuple[Ranges, ...], int, bool]] = {
    128: ((_A,), 0, False),
    256: ((_A, _A), 1, False),
    384: ((_A, _A, _A), 1, False),
    106: ((((0, 26), (-26, -1)),), 0, False),  # ESP32-C5 LLTF
    114: ((_C5_HT20,), 0, False),
    228: ((_C5_HT20, _C5_HT20), 0, False),
    234: ((_C5_HT40,), 0, True),
    468: ((_C5_HT40, _C5_HT40), 0, True),
}
_PRIMARY_SHIFT = {0: 0, 1: 32, 2: -32}  # secondary above: primary is the lower half


@dataclass(frozen=True, slots=True)
class _Layout:
    """Where one frame's subcarriers sit in a CSI buffer."""

    n_values: int  # int8 values the buffer must hold
    gather: npt.NDArray[np.intp]  # (n_sub,) bin of each output subcarrier
    subcarriers: npt.NDArray[np.int16]  # (n_sub,) ascending, read-only, shared by frames
    dc_col: int | None  # output column of subcarrier 0
    bandwidth_mhz: int


@lru_cache(maxsize=64)
def _make_layout(ltfs: tuple[Ranges, ...], emit: int, shift: int, bw40: bool) -> _Layout:
    """Layout emitting training field ``emit`` of ``ltfs``, indices moved by ``shift``."""
    sizes = [sum(hi - lo + 1 for lo, hi in ltf) for ltf in ltfs]
    index = np.concatenate([np.arange(lo, hi + 1) for lo, hi in ltfs[emit]])  # (n_sub,)
    order = np.argsort(index, kind="stable")
    subcarriers = (index[order] + shift).astype(np.int16)  # (n_sub,)
    subcarriers.flags.writeable = False
    dc = np.flatnonzero(subcarriers == 0)
    return _Layout(
        n_values=2 * sum(sizes),
        gather=(sum(sizes[:emit]) + order).astype(np.intp),
        subcarriers=subcarriers,
        dc_col=int(dc[0]) if dc.size else None,
        bandwidth_mhz=40 if bw40 else 20,
    )


@lru_cache(maxsize=256)
def _resolve_layout(
    n_values: int, phy: tuple[int, int, int, int] | None, lltf_only: bool
) -> _Layout | None:
    """The layout of ``n_values`` values given (secondary, sig_mode, cwb, stbc) if known."""
    if phy is not None:
        second, sig_mode, cwb, stbc = phy
        ht = sig_mode != 0
        ht40 = ht and cwb != 0
        ltfs = _CLASSIC.get((second, ht, ht40, ht and stbc != 0))
        if ltfs is not None and lltf_only:
            return _make_layout(ltfs[:1], 0, _PRIMARY_SHIFT[second], False)
        if ltfs is not None:
            shift = 0 if ht40 else _PRIMARY_SHIFT[second]
            layout = _make_layout(ltfs, 1 if len(ltfs) > 1 else 0, shift, ht40)
            if layout.n_values == n_values:
                return layout
    by_length = _BY_LENGTH.get(LLTF_ONLY_VALUES if lltf_only else n_values)
    return None if by_length is None else _make_layout(*by_length[:2], 0, by_length[2])


@dataclass(frozen=True, slots=True)
class _Columns:
    """Field positions of one dialect, -1 where it lacks the field."""

    n_meta: int  # fields before the value list
    lltf_only_ok: bool  # ESP32-CSI-Tool may print just the LLTF of a longer buffer
    length: int
    mac: int
    phy: tuple[int, int, int, int] | None  # secondary_channel, sig_mode, bandwidth, stbc
    optional: tuple[int, ...]  # local_timestamp, seq, rssi, noise_floor, channel, first_word

    @staticmethod
    def from_header(header: str) -> _Columns | None:
        """Columns named by a ``type,...`` header line (its last name is the value list)."""
        names = [name.strip().lower().replace("_", "") for name in header.split(",")][:-1]

        def find(*aliases: str) -> int:
            return next((i for i, name in enumerate(names) if name in aliases), -1)

        phy = (find("secondarychannel"), find("sigmode"), find("bandwidth", "cwb"), find("stbc"))
        optional = ("localtimestamp",), ("id", "seq"), ("rssi",), ("noisefloor",), ("channel",)
        if find("len") < 0:
            return None
        return _Columns(
            n_meta=len(names),
            lltf_only_ok="role" in names,
            length=find("len"),
            mac=find("mac"),
            phy=None if min(phy) < 0 else phy,
            optional=(*(find(*n) for n in optional), find("firstword", "firstwordinvalid")),
        )


_KNOWN = [_Columns.from_header(h) for h in (_CSI_TOOL_HEADER, _ESP_CSI_HEADER, _SHORT_HEADER)]
_BY_FIELD_COUNT = {cols.n_meta: cols for cols in _KNOWN if cols is not None}
_ALLOWED = np.zeros(256, dtype=np.bool_)  # bytes a value list may hold
_ALLOWED[np.frombuffer(b"0123456789- ,\t\n", dtype=np.uint8)] = True


def _parse_values(
    texts: list[bytes],
) -> tuple[npt.NDArray[np.int8], npt.NDArray[np.intp], npt.NDArray[np.bool_]]:
    """Parse integer lists (space or comma separated), all lines in one numpy pass.

    Returns the values of all lines as int8 (0..255 read as the same byte), the count per
    line and whether each line held anything but integers in -128..255.
    """
    n_lines = len(texts)
    a = np.frombuffer(b"\n".join(texts) + b"\n", dtype=np.uint8)  # (B,) bytes
    minus = a == 45
    tok = ((a - np.uint8(48)) < 10) | minus  # (B,) digit or sign
    edge = np.diff(tok.view(np.int8), prepend=np.int8(0))  # (B,) +1 token start, -1 after end
    starts = np.flatnonzero(edge == 1)  # (N,) first byte of each token
    ends = np.flatnonzero(edge == -1)  # (N,) one past its last byte (B ends in a newline)
    newline = np.flatnonzero(a == 10)  # (n_lines,) end of each line
    signs = np.flatnonzero(minus)
    bad_at = np.concatenate((np.flatnonzero(~_ALLOWED[a]), signs[tok[signs - 1]]))
    sign = minus[starts]
    n_digits = ends - starts - sign
    d1, d2, d3 = (a[ends - k].astype(np.int16) - 48 for k in (1, 2, 3))
    value = d1 + np.where(n_digits >= 2, 10 * d2, 0) + np.where(n_digits >= 3, 100 * d3, 0)
    value = np.where(sign, -value, value)  # (N,) int16
    bad_token = (n_digits < 1) | (n_digits > 3) | (value < -128) | (value > 255)
    bad_at = np.concatenate((bad_at, starts[bad_token]))
    bad_line = np.zeros(n_lines, dtype=np.bool_)
    bad_line[np.searchsorted(newline, bad_at)] = True
    counts = np.diff(np.searchsorted(starts, newline), prepend=0)  # (n_lines,) tokens per line
    values = (value & 0xFF).astype(np.uint8).view(np.int8)  # (N,)
    return values, counts, bad_line


def _csi_rows(
    values: npt.NDArray[np.int8],
    starts: npt.NDArray[np.intp],
    first_word_bad: npt.NDArray[np.bool_],
    layout: _Layout,
) -> npt.NDArray[np.complex64]:
    """complex64 (G, 1, 1, n_sub) CSI of G lines sharing ``layout`` (values from ``starts``)."""
    n_rows, n = len(starts), layout.n_values
    v = values[starts[:, None] + np.arange(n)]  # (G, n) int8
    v[first_word_bad, :4] = 0
    pairs = v.reshape(n_rows, n // 2, 2)[:, layout.gather, :]  # (G, n_sub, 2) imag, real
    csi = np.empty(pairs.shape[:2], dtype=np.complex64)  # (G, n_sub)
    csi.real = pairs[..., 1]
    csi.imag = pairs[..., 0]
    if layout.dc_col is not None:
        csi[:, layout.dc_col] = 0
    return csi.reshape(n_rows, 1, 1, -1)


@dataclass(slots=True)
class _Pending:
    """One ``CSI_DATA`` line whose fields parsed, waiting for its values."""

    line_no: int
    length: int  # values announced by `len`
    lltf_only_ok: bool
    mac: str | None
    phy: tuple[int, int, int, int] | None  # secondary channel, sig_mode, cwb, stbc
    timestamp_us: int | None
    seq: int | None
    rssi: int | None
    noise: int | None
    channel: int | None
    first_word: int | None  # first_word_invalid; None where the dialect lacks it


class Esp32Reader(CsiReader):
    """Incremental decoder of ESP32 CSI text lines (file, serial or UDP)."""

    format = "esp32"

    def __init__(self, router_id: str = "", *, chipset: str | None = None) -> None:
        super().__init__(router_id, chipset=chipset)
        self._tail = b""
        self._line_no = 0
        self._header: _Columns | None = None
        self._running_seq = 0
        self._last_ts_us: int | None = None
        self._ts_base_us = 0

    def feed(self, data: bytes, arrival_time_s: float | None = None) -> list[CsiFrame]:
        """Decode the lines ``data`` completes; keep a partial last line for later."""
        lines = (self._tail + bytes(data)).split(b"\n")
        self._tail = lines.pop()
        if len(self._tail) > MAX_LINE_BYTES:
            self._drop_long_tail()
        return self._decode_lines(lines, self._now(arrival_time_s))

    def feed_datagram(self, datagram: bytes, arrival_time_s: float | None = None) -> list[CsiFrame]:
        """Decode one datagram of whole lines; the stream's partial line is left alone."""
        lines = bytes(datagram).split(b"\n")
        if not lines[-1].strip():
            lines.pop()
        return self._decode_lines(lines, self._now(arrival_time_s))

    def feed_line(self, line: str, arrival_time_s: float | None = None) -> CsiFrame | None:
        """Decode one line (without its newline); None for a skipped or bad line."""
        frames = self._decode_lines(
            [line.encode("utf-8", errors="replace")], self._now(arrival_time_s)
        )
        return frames[0] if frames else None

    def flush(self) -> list[CsiFrame]:
        """End of stream: decode a last line that had no newline."""
        tail, self._tail = self._tail, b""
        return self._decode_lines([tail], self._now(None)) if tail else []

    def _drop_long_tail(self) -> None:
        """Bound the partial line: keep only its last record start, if that fits."""
        start = self._tail.rfind(_MARK)
        if start > 0 and len(self._tail) - start <= MAX_LINE_BYTES:
            self._tail = self._tail[start:]
            return
        if start >= 0:
            self._reject(CsiParseError("CSI line too long", line=self._line_no + 1))
        self._tail = b""

    def _decode_lines(self, lines: list[bytes], arrival_time_s: float) -> list[CsiFrame]:
        """Frames from complete lines, in order; bad CSI lines are counted and skipped."""
        frames: list[CsiFrame] = []
        pending: list[_Pending] = []
        texts: list[bytes] = []
        for raw in lines:
            self._line_no += 1
            start = raw.rfind(_MARK)
            if start < 0:
                self._maybe_header(raw)
                continue
            try:
                pending.append(self._parse_meta(raw[start:], texts))
            except CsiParseError as exc:
                self._reject(exc)
            if len(pending) >= BATCH_LINES:
                frames += self._build(pending, texts, arrival_time_s)
                pending, texts = [], []
        if pending:
            frames += self._build(pending, texts, arrival_time_s)
        self.frames_decoded += len(frames)
        return frames

    def _maybe_header(self, raw: bytes) -> None:
        """Adopt a ``type,...,len,...`` header line; any other non-CSI line is ignored."""
        start = raw.rfind(b"type,")
        if start >= 0 and b",len," in raw:
            text = raw[start:].strip().decode("ascii", errors="replace")
            self._header = _Columns.from_header(text) or self._header

    def _parse_meta(self, line: bytes, texts: list[bytes]) -> _Pending:
        """Read one ``CSI_DATA,...`` line's fields; its value text goes to ``texts``."""
        line_no = self._line_no
        open_at = line.find(b"[")
        close_at = line.find(b"]", open_at + 1)
        if open_at < 0 or close_at < 0:
            raise CsiParseError("no complete [...] value list (truncated line?)", line=line_no)
        head = line[:open_at].rstrip(b'"')
        if line[close_at + 1 :].strip(b'" \t\r') or not head.endswith(b","):
            raise CsiParseError("value list is not the last field", line=line_no)
        fields = head[:-1].split(b",")
        cols = self._header
        if cols is None or cols.n_meta != len(fields):
            cols = _BY_FIELD_COUNT.get(len(fields))
        if cols is None:
            raise CsiParseError(f"unknown ESP32 line layout ({len(fields)} fields)", line=line_no)
        try:
            length = int(fields[cols.length])
            optional = [int(fields[i]) if i >= 0 else None for i in cols.optional]
            phy = None
            if cols.phy is not None:
                second, sig_mode, cwb, stbc = cols.phy
                phy = (
                    int(fields[second]),
                    int(fields[sig_mode]),
                    int(fields[cwb]),
                    int(fields[stbc]),
                )
            mac = fields[cols.mac].strip().decode("ascii").lower() if cols.mac >= 0 else None
        except (ValueError, UnicodeDecodeError) as exc:
            raise CsiParseError(f"malformed field: {str(exc)[:80]}", line=line_no) from exc
        item = _Pending(line_no, length, cols.lltf_only_ok, mac, phy, *optional)
        ts = item.timestamp_us
        if length <= 0 or (ts is not None and not 0 <= ts < TIMESTAMP_WRAP_US):
            raise CsiParseError("len or local_timestamp out of range", line=line_no)
        if phy is not None and phy[0] not in _PRIMARY_SHIFT:
            raise CsiParseError(f"secondary_channel {phy[0]} is not 0, 1 or 2", line=line_no)
        texts.append(line[open_at + 1 : close_at])
        return item

    def _build(
        self, pending: list[_Pending], texts: list[bytes], arrival_time_s: float
    ) -> list[CsiFrame]:
        """Parse the value lists of ``pending`` together and turn the good lines into frames."""
        values, counts, bad_line = _parse_values(texts)
        offsets = np.concatenate(([0], np.cumsum(counts)[:-1]))  # (n,) first value of line
        groups: dict[int, tuple[_Layout, list[int]]] = {}  # layout -> indices into `good`
        good: list[tuple[_Pending, int, int, float]] = []  # line, its row, seq, device time
        for row, item in enumerate(pending):
            count = int(counts[row])
            if bad_line[row]:
                self._reject(CsiParseError("values are not all int8", line=item.line_no))
                continue
            lltf_only = item.lltf_only_ok and count == LLTF_ONLY_VALUES < item.length
            if count != item.length and not lltf_only:
                reason = f"len says {item.length} values, the list has {count}"
                self._reject(CsiParseError(reason, line=item.line_no))
                continue
            layout = _resolve_layout(count, item.phy, lltf_only)
            if layout is None or layout.n_values != count:
                reason = f"no known subcarrier layout for {count} values"
                self._reject(CsiParseError(reason, line=item.line_no))
                continue
            groups.setdefault(id(layout), (layout, []))[1].append(len(good))
            seq = self._next_seq(item.seq)
            good.append((item, row, seq, self._device_time_s(item.timestamp_us)))
        frames: list[CsiFrame | None] = [None] * len(good)
        chipset = self.chipset or "esp32"
        for layout, members in groups.values():
            rows = np.fromiter((good[k][1] for k in members), dtype=np.intp, count=len(members))
            first_bad = np.fromiter(
                (good[k][0].first_word != 0 for k in members), dtype=np.bool_, count=len(members)
            )
            csi = _csi_rows(values, offsets[rows], first_bad, layout)  # (G, 1, 1, n_sub)
            for j, k in enumerate(members):
                item, _, seq, device_time_s = good[k]
                frames[k] = CsiFrame(
                    router_id=self.router_id,
                    seq=seq,
                    device_time_s=device_time_s,
                    arrival_time_s=arrival_time_s,
                    csi=csi[j],
                    subcarriers=layout.subcarriers,
                    rssi_dbm=None if item.rssi is None else float(item.rssi),
                    noise_dbm=None if item.noise is None else float(item.noise),
                    channel=item.channel,
                    bandwidth_mhz=layout.bandwidth_mhz,
                    format=self.format,
                    chipset=chipset,
                    source_mac=item.mac,
                )
        return [frame for frame in frames if frame is not None]

    def _next_seq(self, seq: int | None) -> int:
        """The device's sequence number, or a running count when the dialect has none."""
        self._running_seq += 1
        return self._running_seq - 1 if seq is None else seq

    def _device_time_s(self, ts_us: int | None) -> float:
        """Device seconds from a 32-bit µs counter, unwrapped across lines."""
        if ts_us is None:
            return 0.0
        last = self._last_ts_us
        if last is not None and last - ts_us > TIMESTAMP_WRAP_US // 2:
            self._ts_base_us += TIMESTAMP_WRAP_US
        self._last_ts_us = ts_us
        return (ts_us + self._ts_base_us) * 1e-6
