"""Live CSI sources: UDP datagrams, serial ports and capture files replayed in time.

A source yields raw chunks (``SourceChunk``) with their arrival time; decoding is the
reader's job, so recording and the router pipeline share one path. Sources are async so
one event loop (a router actor, or the ``csi record`` command) can host many.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import struct
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from invispose.errors import SourceError

logger = logging.getLogger(__name__)

MAX_DATAGRAM_BYTES = 65_535
UDP_QUEUE_DATAGRAMS = 4096
SERIAL_READ_BYTES = 4096


@dataclass(slots=True)
class SourceChunk:
    """Bytes as they arrived: one UDP datagram or one serial read."""

    data: bytes
    arrival_time_s: float
    datagram: bool  # True: a self-contained datagram; False: part of a byte stream


class _DatagramQueue(asyncio.DatagramProtocol):
    """Receives datagrams into a bounded queue, dropping (and counting) on overflow and
    those from senders outside ``allow_from`` (spoofed)."""

    def __init__(
        self, queue: asyncio.Queue[SourceChunk], allow_from: Sequence[str] | None = None
    ) -> None:
        self.queue = queue
        self.dropped = 0
        self.spoofed = 0
        self.networks = (None if allow_from is None else
                         [ipaddress.ip_network(n, strict=False) for n in allow_from])

    def _allowed(self, host: object) -> bool:
        if self.networks is None:
            return True
        try:
            address = ipaddress.ip_address(str(host))
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped  # a dual-stack socket reports ::ffff:a.b.c.d
        return any(address.version == n.version and address in n for n in self.networks)

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        if not self._allowed(addr[0]):
            self.spoofed += 1
            return
        chunk = SourceChunk(data, time.time(), datagram=True)
        try:
            self.queue.put_nowait(chunk)
        except asyncio.QueueFull:
            self.dropped += 1


class UdpSource:
    """Listens on a UDP port; each datagram is one chunk."""

    def __init__(
        self, host: str = "0.0.0.0", port: int = 5500, allow_from: Sequence[str] | None = None
    ) -> None:
        self.host = host
        self.port = port
        self.queue: asyncio.Queue[SourceChunk] = asyncio.Queue(UDP_QUEUE_DATAGRAMS)
        self._protocol = _DatagramQueue(self.queue, allow_from)
        self._transport: asyncio.DatagramTransport | None = None

    @property
    def dropped(self) -> int:
        """Datagrams dropped because the consumer fell behind."""
        return self._protocol.dropped

    @property
    def spoofed(self) -> int:
        """Datagrams dropped because their sender is not in ``allow_from``."""
        return self._protocol.spoofed

    async def open(self) -> None:
        """Bind the socket."""
        loop = asyncio.get_running_loop()
        try:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: self._protocol, local_addr=(self.host, self.port), allow_broadcast=True
            )
        except OSError as exc:
            raise SourceError(f"cannot listen on udp {self.host}:{self.port}: {exc}") from exc
        self._transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            self.port = sock.getsockname()[1]

    def close(self) -> None:
        """Release the socket."""
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    async def chunks(self) -> AsyncIterator[SourceChunk]:
        """Datagrams as they arrive, until closed."""
        if self._transport is None:
            await self.open()
        while True:
            yield await self.queue.get()


class SerialSource:
    """Reads an ESP32's serial output (pyserial, in a worker thread)."""

    def __init__(self, device: str, baudrate: int = 1_500_000) -> None:
        self.device = device
        self.baudrate = baudrate
        self._port: object | None = None

    def _open(self) -> object:
        import serial  # pyserial, imported here: only serial routers need it

        try:
            return serial.Serial(self.device, self.baudrate, timeout=0.05)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise SourceError(f"cannot open serial port {self.device}: {exc}") from exc

    async def chunks(self) -> AsyncIterator[SourceChunk]:
        """Serial reads as they complete, until the port fails."""
        port = await asyncio.to_thread(self._open)
        self._port = port
        try:
            while True:
                data = await asyncio.to_thread(port.read, SERIAL_READ_BYTES)  # type: ignore[attr-defined]
                if data:
                    yield SourceChunk(bytes(data), time.time(), datagram=False)
        finally:
            await asyncio.to_thread(port.close)  # type: ignore[attr-defined]

    def close(self) -> None:
        """Nothing to do: the port is closed when iteration ends."""


# --- recording -------------------------------------------------------------------------

PCAP_GLOBAL_HEADER = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65_535, 1)  # Ethernet


def pcap_udp_record(payload: bytes, time_s: float, dst_port: int = 5500) -> bytes:
    """One pcap record holding ``payload`` in Ethernet/IPv4/UDP, as Nexmon broadcasts it."""
    udp = struct.pack(">HHHH", 5500, dst_port, 8 + len(payload), 0) + payload
    ip_total = 20 + len(udp)
    ip = struct.pack(
        ">BBHHHBBH4s4s", 0x45, 0, ip_total, 0, 0, 1, 17, 0,
        bytes([10, 10, 10, 10]), bytes([255, 255, 255, 255]),
    )
    frame = b"\xff" * 6 + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00" + ip + udp
    sec = int(time_s)
    usec = int(round((time_s - sec) * 1e6))
    if usec >= 1_000_000:
        sec, usec = sec + 1, usec - 1_000_000
    return struct.pack("<IIII", sec, usec, len(frame), len(frame)) + frame


class CaptureWriter:
    """Writes a live source to a capture file that a ``file`` router can replay."""

    def __init__(self, path: Path, fmt: str) -> None:
        self.path = path
        self.fmt = fmt
        self.chunks = 0
        self.bytes = 0
        self._fh: BinaryIO = path.open("wb")
        if fmt == "nexmon":
            self._fh.write(PCAP_GLOBAL_HEADER)

    def write(self, chunk: SourceChunk) -> None:
        """Append one chunk (datagrams of Nexmon are wrapped in pcap records)."""
        data = chunk.data
        if self.fmt == "nexmon":
            data = pcap_udp_record(data, chunk.arrival_time_s)
        elif chunk.datagram and not data.endswith(b"\n"):
            data += b"\n"  # ESP32 datagrams carry whole lines; keep them line-separated
        self._fh.write(data)
        self.chunks += 1
        self.bytes += len(data)

    def close(self) -> None:
        """Flush and close the file."""
        self._fh.close()
