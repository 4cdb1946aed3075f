"""Reader for the Intel 5300 Linux 802.11n CSI Tool's ``log_to_file`` captures (.dat).

A capture is a sequence of records: a 2-byte big-endian field length (counting the code
byte and the body), a 1-byte code, then the body. Code 0xBB is a beamforming feedback
record carrying one packet's CSI; other codes are skipped. The CSI payload holds 30
subcarrier groups, each 3 padding bits followed by Nrx·Ntx complex values as bit-packed
signed 8-bit real and imaginary parts. All complete records of one ``feed`` call are
unpacked together with numpy, grouped by antenna configuration.
"""

from __future__ import annotations

import logging
import struct

import numpy as np
import numpy.typing as npt

from invispose.csi.base import CsiReader
from invispose.errors import CsiParseError
from invispose.schemas import CsiFrame

logger = logging.getLogger(__name__)

BFEE_CODE = 0xBB
N_GROUPS = 30
MAX_ANTENNAS = 3
HEADER_BYTES = 20  # beamforming body header before the payload
PREFIX_BYTES = 3  # field length (2) + code (1)
RECORD_HEADER_BYTES = PREFIX_BYTES + HEADER_BYTES
NOISE_UNKNOWN_DB = -127  # the card reports this when it has not measured the noise floor
NOISE_DEFAULT_DBM = -92.0  # thermal noise assumed in that case, as the CSI Tool does
RSSI_OFFSET_DB = 44.0  # Intel's RSSI-to-dBm offset (before subtracting AGC)
HT40_FLAG = 1 << 11  # rate_n_flags bit of a 40 MHz (HT40) packet
TIMESTAMP_MODULUS = 1 << 32  # timestamp_low is a 32-bit µs counter

_PREFIX = struct.Struct(">HB")  # field length, code
# timestamp_low, bfee_count, 2 reserved, Nrx, Ntx, rssi_a/b/c, noise, agc, antenna_sel,
# payload length, fake_rate_n_flags
_HEADER = struct.Struct("<IH2xBBBBBbBBHH")

SUBCARRIERS_20MHZ = np.array(
    [*range(-28, -1, 2), -1, *range(1, 28, 2), 28], dtype=np.int16
)  # (30,) 802.11n grouping Ng=2
SUBCARRIERS_40MHZ = np.arange(-58, 59, 4, dtype=np.int16)  # (30,) grouping Ng=4
SUBCARRIERS_20MHZ.flags.writeable = False
SUBCARRIERS_40MHZ.flags.writeable = False

# extra gain of 2 and 3 transmit streams: Intel approximates ×3 as 4.5 dB
_NTX_GAIN = np.array([1.0, 1.0, np.sqrt(2.0), np.sqrt(10.0**0.45)])


def payload_bytes(n_rx: int, n_tx: int) -> int:
    """Payload length of a beamforming record with these antenna counts."""
    return (N_GROUPS * (n_rx * n_tx * 16 + 3) + 7) // 8


# field length (code + header + payload) of every valid (Nrx, Ntx)
_FIELD_LEN = {
    (n_rx, n_tx): 1 + HEADER_BYTES + payload_bytes(n_rx, n_tx)
    for n_rx in range(1, MAX_ANTENNAS + 1)
    for n_tx in range(1, MAX_ANTENNAS + 1)
}
MIN_BFEE_FIELD_LEN = 1 + HEADER_BYTES
MAX_BFEE_FIELD_LEN = max(_FIELD_LEN.values())


def _bit_layout(n_rx: int, n_tx: int) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.uint16]]:
    """Byte index and bit shift of every 8-bit value in a payload: each (30, n, 2)."""
    n = n_rx * n_tx
    group = np.arange(N_GROUPS)[:, None, None]
    value = np.arange(n)[None, :, None]
    part = np.arange(2)[None, None, :]  # 0 real, 1 imaginary
    start_bit = group * (3 + 16 * n) + 3 + 16 * value + 8 * part  # (30, n, 2)
    byte_index = (start_bit // 8).astype(np.intp)
    assert int(byte_index.max()) + 1 < payload_bytes(n_rx, n_tx)
    return byte_index, (start_bit % 8).astype(np.uint16)


_LAYOUTS = {key: _bit_layout(*key) for key in _FIELD_LEN}


def _unpack_payloads(
    payload: npt.NDArray[np.uint8], n_rx: int, n_tx: int
) -> npt.NDArray[np.complex64]:
    """Unpack M payloads (M, len) uint8 into CSI (M, n_tx, n_rx, 30) complex64."""
    byte_index, shift = _LAYOUTS[(n_rx, n_tx)]
    wide = payload.astype(np.uint16)  # (M, len)
    words = wide[:, byte_index] | (wide[:, byte_index + 1] << 8)  # (M, 30, n, 2)
    values = (words >> shift).astype(np.uint8).view(np.int8)  # (M, 30, n, 2)
    csi = np.empty(values.shape[:-1], dtype=np.complex64)  # (M, 30, n)
    csi.real = values[..., 0]
    csi.imag = values[..., 1]
    # value j of a group is transmit antenna j % n_tx, receive antenna j // n_tx
    csi4 = csi.reshape(-1, N_GROUPS, n_rx, n_tx)  # (M, 30, n_rx, n_tx)
    return np.ascontiguousarray(csi4.transpose(0, 3, 2, 1))  # (M, n_tx, n_rx, 30)


def _permute_rx(
    csi: npt.NDArray[np.complex64], antenna_sel: npt.NDArray[np.int64]
) -> npt.NDArray[np.complex64]:
    """Put receive antennas in physical order as the CSI Tool's read_bf_file does.

    The tool permutes only when all three receive antennas are in use; antenna_sel
    values that are no permutation of the three leave the order as received.
    """
    m, _, n_rx, _ = csi.shape
    if n_rx != MAX_ANTENNAS:
        return csi
    perm = (antenna_sel[:, None] >> (2 * np.arange(MAX_ANTENNAS))) & 3  # (M, 3)
    is_perm = (np.sort(perm, axis=1) == np.arange(MAX_ANTENNAS)).all(axis=1)  # (M,)
    # antenna k was received as column k and belongs in column perm[k]
    source = np.where(is_perm[:, None], np.argsort(perm, axis=1), np.arange(MAX_ANTENNAS))
    return np.take_along_axis(csi, source.reshape(m, 1, n_rx, 1), axis=2)


def total_rss_dbm(
    rssi: npt.NDArray[np.float64], agc_db: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """Total received power in dBm from per-antenna RSSI (M, 3) and AGC (M,); -inf if none."""
    power = np.where(rssi != 0, 10.0 ** (rssi / 10.0), 0.0).sum(axis=1)  # (M,)
    with np.errstate(divide="ignore"):
        rss_dbm: npt.NDArray[np.float64] = 10.0 * np.log10(power) - RSSI_OFFSET_DB - agc_db
    return rss_dbm


def scale_factors(
    csi: npt.NDArray[np.complex64],
    rss_dbm: npt.NDArray[np.float64],
    noise_db: npt.NDArray[np.float64],
) -> npt.NDArray[np.float64]:
    """Per-record factor turning raw CSI (M, n_tx, n_rx, 30) into sqrt(SNR) units.

    The CSI power is matched to the reported received power, and divided by thermal
    noise plus the 8-bit quantisation error (about 1 per entry and subcarrier).
    """
    m, n_tx, n_rx, n_sub = csi.shape
    wide = csi.astype(np.complex128)
    csi_power = (wide.real**2 + wide.imag**2).reshape(m, -1).sum(axis=1)  # (M,)
    rssi_power = 10.0 ** (rss_dbm / 10.0)
    thermal_db = np.where(noise_db == NOISE_UNKNOWN_DB, NOISE_DEFAULT_DBM, noise_db)
    thermal_power = 10.0 ** (thermal_db / 10.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = rssi_power / (csi_power / n_sub)
        quantisation_power = scale * (n_rx * n_tx)
        factor = np.sqrt(scale / (thermal_power + quantisation_power))
    # an all-zero matrix stays zero (the CSI Tool would return NaN)
    factor = np.where(csi_power > 0, factor, 0.0)
    scaled: npt.NDArray[np.float64] = factor * _NTX_GAIN[n_tx]  # (M,)
    return scaled


class Intel5300Reader(CsiReader):
    """Incremental decoder of Intel 5300 CSI Tool records into ``CsiFrame``s."""

    format = "intel5300"

    def __init__(
        self, router_id: str = "", *, chipset: str | None = None, scaled: bool = False
    ) -> None:
        super().__init__(router_id, chipset=chipset or "iwl5300")
        self.scaled = scaled
        self._pending = b""  # bytes of a record not yet complete
        self._base = 0  # stream offset of _pending[0]
        self._skip = 0  # bytes of a skipped record still to arrive
        self._scanning = False  # looking for the next valid header after a bad record
        self._last_ts_low: int | None = None
        self._last_time_us = 0

    def feed(self, data: bytes, arrival_time_s: float | None = None) -> list[CsiFrame]:
        """Decode the beamforming records that ``data`` completes."""
        arrival_s = self._now(arrival_time_s)
        data = bytes(data)
        if self._skip:
            skipped = min(self._skip, len(data))
            self._skip -= skipped
            self._base += skipped
            data = data[skipped:]
        buf = self._pending + data if self._pending else data
        starts, pos = self._frame_records(buf)
        self._base += pos
        self._pending = buf[pos:]
        if not starts:
            return []
        return self._decode(buf, starts, arrival_s)

    def flush(self) -> list[CsiFrame]:
        """End of stream: a partial record left over counts as bad."""
        if self._pending and not self._scanning:
            self._reject(
                CsiParseError(
                    f"truncated record: stream ends {len(self._pending)} bytes into it",
                    offset=self._base,
                )
            )
        self._base += len(self._pending)
        self._pending = b""
        self._skip = 0
        self._scanning = False
        return []

    def _bad(self, message: str, pos: int) -> None:
        """Reject the record at ``pos`` of the current buffer."""
        error = CsiParseError(message, offset=self._base + pos)
        logger.debug("skipping bad Intel 5300 record: %s", error)
        self._reject(error)

    def _frame_records(self, buf: bytes) -> tuple[list[int], int]:
        """Find the complete valid beamforming records in ``buf``; return starts and end."""
        starts: list[int] = []
        end = len(buf)
        pos = 0
        while True:
            if self._scanning:
                pos, found = _find_header(buf, pos)
                if not found:
                    return starts, pos
                self._scanning = False
            if end - pos < PREFIX_BYTES:
                return starts, pos
            field_len, code = _PREFIX.unpack_from(buf, pos)
            if field_len == 0:
                self._bad("record field length 0 leaves no room for its code", pos)
                pos += 1
                self._scanning = True
                continue
            record_end = pos + 2 + field_len
            if code == BFEE_CODE:
                if not MIN_BFEE_FIELD_LEN <= field_len <= MAX_BFEE_FIELD_LEN:
                    self._bad(
                        f"beamforming record field length {field_len} outside "
                        f"{MIN_BFEE_FIELD_LEN}..{MAX_BFEE_FIELD_LEN}",
                        pos,
                    )
                    pos += 1
                    self._scanning = True
                    continue
                if end - pos < RECORD_HEADER_BYTES:
                    return starts, pos
                problem = _header_problem(buf, pos)
                if problem is None:
                    if record_end > end:
                        return starts, pos
                    starts.append(pos)
                    pos = record_end
                    continue
                self._bad(problem, pos)
            # skip a bad beamforming record by its length, any other code silently
            if record_end > end:
                self._skip = record_end - end
                return starts, end
            pos = record_end

    def _decode(self, buf: bytes, starts: list[int], arrival_s: float) -> list[CsiFrame]:
        """Turn the valid records at ``starts`` into frames, unpacking them in bulk."""
        n = len(starts)
        fields = np.array(
            [_HEADER.unpack_from(buf, s + PREFIX_BYTES) for s in starts], dtype=np.int64
        )  # (N, 12)
        ts_low, seq, n_rx, n_tx = fields[:, 0], fields[:, 1], fields[:, 2], fields[:, 3]
        rssi = fields[:, 4:7].astype(np.float64)  # (N, 3)
        noise, agc, antenna_sel, rate = fields[:, 7], fields[:, 8], fields[:, 9], fields[:, 11]
        rss_dbm = total_rss_dbm(rssi, agc.astype(np.float64))  # (N,)
        time_s = self._unwrap_us(ts_low) / 1e6  # (N,)

        raw = np.frombuffer(buf, dtype=np.uint8)
        payload_at = np.asarray(starts, dtype=np.intp) + RECORD_HEADER_BYTES  # (N,)
        csi_of: list[npt.NDArray[np.complex64]] = [np.empty(0, np.complex64)] * n
        config = n_rx * 4 + n_tx
        for key in np.unique(config).tolist():
            rows = np.flatnonzero(config == key)  # (M,)
            rx, tx = divmod(int(key), 4)
            size = payload_bytes(rx, tx)
            payload = raw[payload_at[rows, None] + np.arange(size)]  # (M, size)
            csi = _permute_rx(_unpack_payloads(payload, rx, tx), antenna_sel[rows])
            if self.scaled:
                factor = scale_factors(csi, rss_dbm[rows], noise[rows].astype(np.float64))
                csi = (csi * factor[:, None, None, None]).astype(np.complex64)
            for row, matrix in zip(rows.tolist(), csi, strict=True):
                csi_of[row] = matrix  # (n_tx, n_rx, 30)

        wide = (rate & HT40_FLAG) != 0
        rss_list = [None if not np.isfinite(v) else v for v in rss_dbm.tolist()]
        noise_list = [None if v == NOISE_UNKNOWN_DB else float(v) for v in noise.tolist()]
        frames: list[CsiFrame] = []
        for i, (seq_i, t_s, wide_i, agc_i) in enumerate(
            zip(seq.tolist(), time_s.tolist(), wide.tolist(), agc.tolist(), strict=True)
        ):
            frames.append(
                CsiFrame(
                    router_id=self.router_id,
                    seq=seq_i,
                    device_time_s=t_s,
                    arrival_time_s=arrival_s,
                    csi=csi_of[i],
                    subcarriers=SUBCARRIERS_40MHZ if wide_i else SUBCARRIERS_20MHZ,
                    rssi_dbm=rss_list[i],
                    noise_dbm=noise_list[i],
                    bandwidth_mhz=40 if wide_i else 20,
                    format=self.format,
                    chipset=self.chipset,
                    agc_db=float(agc_i),
                )
            )
        self.frames_decoded += n
        return frames

    def _unwrap_us(self, ts_low: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """Unwrap the 32-bit µs counter: steps of more than half its range are wraps."""
        previous = ts_low[0] if self._last_ts_low is None else self._last_ts_low
        step = np.diff(ts_low, prepend=previous) % TIMESTAMP_MODULUS  # (N,)
        step = np.where(step >= TIMESTAMP_MODULUS // 2, step - TIMESTAMP_MODULUS, step)
        base = int(ts_low[0]) if self._last_ts_low is None else self._last_time_us
        time_us = base + np.cumsum(step)  # (N,)
        self._last_ts_low = int(ts_low[-1])
        self._last_time_us = int(time_us[-1])
        return time_us


def _header_problem(buf: bytes, pos: int) -> str | None:
    """Why the beamforming header at ``pos`` is inconsistent, or None if it is valid."""
    field_len = (buf[pos] << 8) | buf[pos + 1]
    n_rx, n_tx = buf[pos + 11], buf[pos + 12]
    length = buf[pos + 19] | (buf[pos + 20] << 8)
    expected = _FIELD_LEN.get((n_rx, n_tx))
    if expected is None:
        return f"beamforming record with Nrx={n_rx}, Ntx={n_tx} (each must be 1..3)"
    if length != expected - MIN_BFEE_FIELD_LEN:
        return (
            f"beamforming payload length {length} does not match "
            f"{expected - MIN_BFEE_FIELD_LEN} for Nrx={n_rx}, Ntx={n_tx}"
        )
    if field_len != expected:
        return f"beamforming record field length {field_len}, expected {expected} for its payload"
    return None


def _find_header(buf: bytes, start: int) -> tuple[int, bool]:
    """First record start >= ``start`` with a valid beamforming header.

    Returns (start, True) when found, else (where to resume once more bytes arrive, False).
    """
    end = len(buf)
    code_at = buf.find(BFEE_CODE, start + 2)
    while code_at >= 0:
        pos = code_at - 2
        if end - pos < RECORD_HEADER_BYTES:
            return pos, False
        if _header_problem(buf, pos) is None:
            return pos, True
        code_at = buf.find(BFEE_CODE, code_at + 1)
    return max(start, end - 2), False
