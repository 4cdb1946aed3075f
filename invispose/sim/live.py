"""A simulated router as a live source: a Scene streamed in real time for the runtime."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from invispose.config import RouterConfig, SimulatedSource, SpaceConfig
from invispose.errors import SimulationError
from invispose.schemas import CsiFrame
from invispose.sim.scene import RouterSpec, Scene

STEP_S = 0.02  # frames are produced in steps this long (2 packets at 100 Hz)
MAX_CATCH_UP_S = 1.0  # after a stall, skip ahead rather than burst more than this


class SimulatedStream:
    """Frames of one simulated router, due as wall time passes.

    Every router of a space builds the same world from the space's size and the source's
    seed and people, on a shared clock origin (``epoch_s``), so they observe the same
    people at the same moments and the tracker can fuse them.
    """

    bad_records = 0  # the simulator writes no bad records
    spoofed = 0  # and has no senders

    def __init__(self, scene: Scene, router_id: str, step_s: float = STEP_S) -> None:
        self.scene = scene
        self.router_id = router_id
        self.step_s = step_s

    @classmethod
    def from_config(cls, router: RouterConfig, space: SpaceConfig) -> SimulatedStream:
        """The stream a `simulated` router's configuration describes."""
        source = router.source
        if not isinstance(source, SimulatedSource):
            raise SimulationError(f"router {router.id} is not a simulated router")
        spec = RouterSpec(
            router.id,
            source.hardware,
            tuple(router.tx_positions_m),
            tuple(router.rx_positions_m),
            source.rate_hz,
        )
        scene = Scene.simple(
            space.size_m,
            [spec],
            source.people,
            seed=source.seed,
            epoch_s=source.epoch_s if source.epoch_s is not None else time.time(),
        )
        return cls(scene, router.id)

    async def frames(self) -> AsyncIterator[list[CsiFrame]]:
        """Batches of frames as their packets fall due."""
        last_s = time.time() - self.scene.epoch_s
        while True:
            await asyncio.sleep(self.step_s)
            now_s = time.time() - self.scene.epoch_s
            last_s = max(last_s, now_s - MAX_CATCH_UP_S)
            batch = self.scene.frames(self.router_id, last_s, now_s)
            last_s = now_s
            if batch:
                yield batch

    def close(self) -> None:
        """Nothing to release."""
