"""Frame sources for routers: one async iterator of CsiFrame batches per router kind."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from invispose.config import (
    Esp32SerialSource,
    Esp32UdpSource,
    FileSource,
    NexmonUdpSource,
    RouterConfig,
    SimulatedSource,
    SiteConfig,
    SpaceConfig,
)
from invispose.csi.base import CsiReader
from invispose.csi.formats import make_reader
from invispose.csi.replay import FileReplay, FrameReplay
from invispose.csi.sources import SerialSource, UdpSource
from invispose.csi.window import Windower
from invispose.errors import SourceError
from invispose.schemas import CsiFrame


class FrameSource(Protocol):
    """What a router consumes: batches of decoded frames, plus reader counters."""

    @property
    def bad_records(self) -> int:
        """Records the reader rejected so far."""
        ...

    @property
    def spoofed(self) -> int:
        """Datagrams dropped because their sender is not allowed (0 for other sources)."""
        ...

    def frames(self) -> AsyncIterator[list[CsiFrame]]:
        """Batches of frames as they arrive."""
        ...

    def close(self) -> None:
        """Release sockets, ports and files."""
        ...


class DecodedStream:
    """A live byte source (UDP, serial) decoded by a format reader."""

    def __init__(self, source: UdpSource | SerialSource, reader: CsiReader) -> None:
        self.source = source
        self.reader = reader

    @property
    def bad_records(self) -> int:
        """Records the reader rejected."""
        return self.reader.bad_records

    @property
    def spoofed(self) -> int:
        """Datagrams from senders outside the source's ``allow_from``."""
        return self.source.spoofed if isinstance(self.source, UdpSource) else 0

    async def frames(self) -> AsyncIterator[list[CsiFrame]]:
        """Decoded frames per received chunk (chunks that decode to nothing are skipped)."""
        async for chunk in self.source.chunks():
            if chunk.datagram:
                batch = self.reader.feed_datagram(chunk.data, chunk.arrival_time_s)
            else:
                batch = self.reader.feed(chunk.data, chunk.arrival_time_s)
            if batch:
                yield batch

    def close(self) -> None:
        """Close the underlying socket or port."""
        self.source.close()


class ReplayStream:
    """Recorded frames (a capture file, or simulated once) replayed in time."""

    def __init__(self, replay: FrameReplay) -> None:
        self.replay = replay

    @property
    def bad_records(self) -> int:
        """Records the capture file held that could not be decoded."""
        return self.replay.bad_records

    @property
    def spoofed(self) -> int:
        """A replay has no senders."""
        return 0

    def frames(self) -> AsyncIterator[list[CsiFrame]]:
        """The replay's paced batches."""
        return self.replay.frames()

    def close(self) -> None:
        """Nothing to release: the capture was read at start."""


def build_source(router: RouterConfig, space: SpaceConfig) -> FrameSource:
    """The frame source a router's configuration describes."""
    src = router.source
    if isinstance(src, Esp32UdpSource):
        source = UdpSource(src.host, src.port, src.allow_from)
        return DecodedStream(source, make_reader("esp32", router.id))
    if isinstance(src, NexmonUdpSource):
        reader = make_reader("nexmon", router.id, chipset=src.chipset, container="udp")
        return DecodedStream(UdpSource(src.host, src.port, src.allow_from), reader)
    if isinstance(src, Esp32SerialSource):
        return DecodedStream(
            SerialSource(src.device, src.baudrate), make_reader("esp32", router.id)
        )
    if isinstance(src, FileSource):
        replay = FileReplay(
            src.path,
            router_id=router.id,
            fmt=src.format,
            chipset=src.chipset,
            speed=src.speed,
            loop=src.loop,
        )
        return ReplayStream(replay)
    if isinstance(src, SimulatedSource):
        from invispose.sim.live import SimulatedStream

        simulated = SimulatedStream.from_config(router, space)
        if src.loop_s is not None:  # simulate once, replay: load generation for benchmarks
            frames = simulated.scene.frames(router.id, 0.0, src.loop_s)
            return ReplayStream(FrameReplay(frames, router_id=router.id))
        stream: FrameSource = simulated
        return stream
    raise SourceError(f"router {router.id}: unsupported source kind {router.kind!r}")


def router_windower(site: SiteConfig, router: RouterConfig) -> Windower:
    """The Windower a router's configuration and the model's window shape describe."""
    space = site.space(router.space)
    model = site.model
    return Windower(
        router_id=router.id,
        space_id=space.id,
        tx_pos_m=router.tx_positions_m,
        rx_pos_m=router.rx_positions_m,
        room_size_m=space.size_m,
        rate_hz=model.rate_hz,
        window_samples=model.window_samples,
        n_subcarriers=model.n_subcarriers,
        capacity=max(4 * model.window_samples, 2048),
        chain_phase_rad=router.chain_phase_rad,
    )
