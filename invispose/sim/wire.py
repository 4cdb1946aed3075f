"""Simulated frames as the bytes real hardware sends: ESP32 lines, Nexmon UDP, Intel 5300 .dat.

The encoders write exactly what the project's readers (``invispose.csi``) parse, in the
layouts described in ``shared/CSI_FORMATS.md``:

* ESP32: one text line per frame, ESP32-CSI-Tool CSV (25 fields, then ``[v0 v1 … ]``) or
  esp-csi ``csi_recv`` (24 fields, then ``"[d0,d1,…]"``), int8 pairs (imaginary, real)
  for the 64 LLTF bins in buffer order 0…31, -32…-1. The CSI-Tool dialect has no
  ``first_word`` flag, so readers zero subcarriers 0 and +1 of its lines, as on the chip.
* Nexmon (bcm43455c0): current-firmware UDP payloads, an 18-byte header (magic 0x1111,
  RSSI, frame control, MAC, sequence, core/stream, chanspec, chip version) then int16
  real and imaginary per bin in FFT order; one payload per core and spatial stream;
  pcap files of those payloads in Ethernet/IPv4/UDP to port 5500.
* Intel 5300: ``log_to_file`` records: big-endian field length, code 0xBB, the 20-byte
  beamforming header, and 30 groups of 3 padding bits plus Nrx·Ntx bit-packed int8
  (real, imaginary) pairs, value j being transmit antenna j % Ntx, receive j // Ntx.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import numpy.typing as npt

from invispose.csi.sources import PCAP_GLOBAL_HEADER, pcap_udp_record
from invispose.errors import SimulationError
from invispose.schemas import CsiFrame

ESP32_HEADER = (
    "type,role,mac,rssi,rate,sig_mode,mcs,bandwidth,smoothing,not_sounding,aggregation,stbc,"
    "fec_coding,sgi,noise_floor,ampdu_cnt,channel,secondary_channel,local_timestamp,ant,"
    "sig_len,rx_state,real_time_set,real_timestamp,len,CSI_DATA"
)
ESP32_DIALECTS = ("csi-tool", "esp-csi")
SIM_MAC = "1a:00:5e:00:00:01"
NEXMON_CHIP_VERSION = 0x0065  # bcm43455c0
_NEXMON_BW_CODE = {20: 2, 40: 3, 80: 4}
_NEXMON_HEADER = struct.Struct("<2sbB6sHHHH")
_INTEL_HEADER = struct.Struct("<IH2xBBBBBbBBHH")
INTEL_CODE = 0xBB
INTEL_RSSI_OFFSET_DB = 44.0
_IDENTITY_ANTENNA_SEL = 0 | (1 << 2) | (2 << 4)  # receive antennas in physical order


def _ints(frame: CsiFrame, bits: int) -> npt.NDArray[np.int64]:
    """Frame CSI as integers (..., 2) (real, imaginary), checked against the bit width."""
    csi = np.asarray(frame.csi)
    parts = np.stack((np.round(csi.real), np.round(csi.imag)), axis=-1).astype(np.int64)
    limit = 1 << (bits - 1)
    if parts.min(initial=0) < -limit or parts.max(initial=0) >= limit:
        raise SimulationError(f"frame {frame.seq}: CSI values do not fit {bits}-bit integers")
    return parts


# --- ESP32 ---------------------------------------------------------------------------


def esp32_line(frame: CsiFrame, dialect: str = "csi-tool") -> str:
    """One ESP32 CSI line (no newline) for a 1×1 frame over subcarriers -32…31."""
    if dialect not in ESP32_DIALECTS:
        raise SimulationError(f"unknown ESP32 dialect {dialect!r} (use {ESP32_DIALECTS})")
    sub = np.asarray(frame.subcarriers)
    if frame.csi.shape[:2] != (1, 1) or not np.array_equal(sub, np.arange(-32, 32)):
        raise SimulationError("ESP32 lines need 1x1 frames over subcarriers -32..31")
    parts = _ints(frame, 8)[0, 0]  # (64, 2) real, imag by ascending subcarrier
    order = np.r_[np.arange(32, 64), np.arange(0, 32)]  # buffer: 0..31 then -32..-1
    values = parts[order][:, ::-1].reshape(-1)  # (128,) imag, real pairs
    rssi = int(round(frame.rssi_dbm if frame.rssi_dbm is not None else -60.0))
    noise = int(round(frame.noise_dbm if frame.noise_dbm is not None else -95.0))
    ts_us = int(round(frame.device_time_s * 1e6)) % (1 << 32)
    channel = frame.channel or 6
    phy = f"11,0,0,0,0,0,0,0,0,0,{noise},0,{channel},0,{ts_us},0,100,0"
    if dialect == "csi-tool":
        text = " ".join(str(int(v)) for v in values)
        return (f"CSI_DATA,PASSIVE,{SIM_MAC},{rssi},{phy},0,{frame.arrival_time_s:.6f},"
                f"{len(values)},[{text} ]")
    text = ",".join(str(int(v)) for v in values)
    return f'CSI_DATA,{frame.seq},{SIM_MAC},{rssi},{phy},{len(values)},0,"[{text}]"'


def esp32_text(frames: Iterable[CsiFrame], dialect: str = "csi-tool", header: bool = True) -> bytes:
    """A whole ESP32 capture: the CSI-Tool header line (if asked) and one line per frame."""
    lines = [ESP32_HEADER] if header and dialect == "csi-tool" else []
    lines += [esp32_line(f, dialect) for f in frames]
    return ("\n".join(lines) + "\n").encode("ascii")


# --- Nexmon --------------------------------------------------------------------------


def nexmon_chanspec(channel: int, bandwidth_mhz: int) -> int:
    """Broadcom chanspec of a centre channel and bandwidth (5 GHz band bits set above 14)."""
    band = 0xC000 if channel > 14 else 0x0000
    return band | (_NEXMON_BW_CODE[bandwidth_mhz] << 11) | (channel & 0xFF)


def nexmon_payloads(frame: CsiFrame) -> list[bytes]:
    """UDP payloads of one frame: one per (core = receive, stream = transmit) antenna."""
    n_sub = frame.csi.shape[2]
    sub = np.asarray(frame.subcarriers)
    if not np.array_equal(sub, np.arange(-(n_sub // 2), n_sub // 2)) or n_sub not in (64, 128,
                                                                                     256):
        raise SimulationError("Nexmon payloads need frames over all 64, 128 or 256 bins")
    parts = _ints(frame, 16)  # (n_tx, n_rx, n_sub, 2)
    rssi = int(max(-128, min(127, round(frame.rssi_dbm if frame.rssi_dbm is not None else -60))))
    chanspec = nexmon_chanspec(frame.channel or 42, frame.bandwidth_mhz)
    mac = bytes.fromhex(SIM_MAC.replace(":", ""))
    out = []
    for tx in range(parts.shape[0]):
        for rx in range(parts.shape[1]):
            bins = np.fft.ifftshift(parts[tx, rx], axes=0)  # ascending -> FFT order
            head = _NEXMON_HEADER.pack(b"\x11\x11", rssi, 0x08, mac, frame.seq % 65536,
                                       (rx & 7) | ((tx & 7) << 3), chanspec, NEXMON_CHIP_VERSION)
            out.append(head + bins.astype("<i2").tobytes())
    return out


def nexmon_pcap(frames: Iterable[CsiFrame]) -> bytes:
    """A pcap capture of the frames' Nexmon payloads, stamped with their device times."""
    chunks = [PCAP_GLOBAL_HEADER]
    for frame in frames:
        for payload in nexmon_payloads(frame):
            chunks.append(pcap_udp_record(payload, frame.device_time_s))
    return b"".join(chunks)


# --- Intel 5300 ------------------------------------------------------------------------


def intel5300_payload(csi_ints: npt.NDArray[np.int64]) -> bytes:
    """Bit-packed payload of integer CSI (n_tx, n_rx, 30, 2)."""
    n_tx, n_rx, n_groups, _ = csi_ints.shape
    n = n_tx * n_rx
    # value j of a group: transmit j % n_tx, receive j // n_tx
    per_group = csi_ints.transpose(2, 1, 0, 3).reshape(n_groups, n, 2)  # (30, n, 2)
    byte_values = (per_group.astype(np.int64) & 0xFF).astype(np.uint8)  # two's complement
    value_bits = np.unpackbits(byte_values[..., None], axis=-1, bitorder="little")  # (30, n, 2, 8)
    group_bits = np.zeros((n_groups, 3 + 16 * n), dtype=np.uint8)
    group_bits[:, 3:] = value_bits.reshape(n_groups, 16 * n)
    n_bytes = (n_groups * (16 * n + 3) + 7) // 8
    bits = np.zeros(n_bytes * 8, dtype=np.uint8)
    bits[: group_bits.size] = group_bits.reshape(-1)
    return np.packbits(bits, bitorder="little").tobytes()


def intel5300_record(frame: CsiFrame) -> bytes:
    """One beamforming (0xBB) record of a frame with 30 grouped subcarriers."""
    n_tx, n_rx, n_sub = frame.csi.shape
    if n_sub != 30 or not (1 <= n_tx <= 3 and 1 <= n_rx <= 3):
        raise SimulationError("Intel 5300 records need frames of 1-3 x 1-3 antennas, 30 groups")
    payload = intel5300_payload(_ints(frame, 8))
    rssi_dbm = frame.rssi_dbm if frame.rssi_dbm is not None else -50.0
    agc = int(max(0, min(63, round(frame.agc_db if frame.agc_db is not None else 30.0) % 64)))
    per_antenna = rssi_dbm + INTEL_RSSI_OFFSET_DB + agc - 10.0 * math.log10(n_rx)
    rssi = [int(max(1, min(255, round(per_antenna)))) if k < n_rx else 0 for k in range(3)]
    noise = int(max(-127, min(127, round(frame.noise_dbm if frame.noise_dbm is not None else -92))))
    rate_flags = 0x4101 if frame.bandwidth_mhz == 20 else 0x4101 | (1 << 11)
    header = _INTEL_HEADER.pack(
        int(round(frame.device_time_s * 1e6)) % (1 << 32), frame.seq % 65536, n_rx, n_tx,
        *rssi, noise, agc, _IDENTITY_ANTENNA_SEL, len(payload), rate_flags,
    )
    body = bytes([INTEL_CODE]) + header + payload
    return struct.pack(">H", len(body)) + body


def intel5300_dat(frames: Iterable[CsiFrame]) -> bytes:
    """A ``log_to_file`` capture of the frames."""
    return b"".join(intel5300_record(f) for f in frames)


# --- files -----------------------------------------------------------------------------

WIRE_SUFFIX = {"esp32": ".csv", "nexmon": ".pcap", "intel5300": ".dat"}


def encode(frames: list[CsiFrame], fmt: str, *, dialect: str = "csi-tool") -> bytes:
    """A capture file's bytes in ``fmt`` ("esp32", "nexmon" or "intel5300")."""
    if fmt == "esp32":
        return esp32_text(frames, dialect)
    if fmt == "nexmon":
        return nexmon_pcap(frames)
    if fmt == "intel5300":
        return intel5300_dat(frames)
    raise SimulationError(f"no wire format {fmt!r} (use esp32, nexmon or intel5300)")


def write_capture(frames: list[CsiFrame], path: str | Path, fmt: str, **options: str) -> Path:
    """Write frames as a capture file the project's readers (and ``csi info``) accept."""
    target = Path(path)
    target.write_bytes(encode(frames, fmt, **options))
    return target
