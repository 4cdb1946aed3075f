"""Replay a recorded capture as a live source, at its recorded rate or faster."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np

from invispose.csi.formats import read_capture
from invispose.errors import SourceError
from invispose.schemas import CsiFrame

MAX_SLEEP_STEP_S = 0.05  # frames due within this are yielded together
MAX_GAP_S = 1.0
NOMINAL_RATE_HZ = 100.0  # a longer pause in the recording is shortened to this


class FrameReplay:
    """Yields recorded frames paced by their device timestamps, re-stamped as arriving now."""

    def __init__(
        self,
        frames: list[CsiFrame],
        *,
        router_id: str,
        speed: float = 1.0,
        loop: bool = True,
        bad_records: int = 0,
    ) -> None:
        if speed <= 0:
            raise SourceError(f"replay speed must be positive, got {speed}")
        if not frames:
            raise SourceError("no CSI frames to replay")
        self.recorded = sorted(frames, key=lambda f: f.device_time_s)
        self.bad_records = bad_records
        device_s = np.array([f.device_time_s for f in self.recorded], dtype=np.float64)
        steps = np.clip(np.diff(device_s, prepend=device_s[0]), 0.0, MAX_GAP_S)  # (N,)
        if steps.sum() <= 0:  # no usable timestamps: pace at the nominal 100 Hz
            steps = np.full(len(steps), 1.0 / NOMINAL_RATE_HZ)
        self.offsets_s = np.cumsum(steps) / speed  # (N,) replay time of each frame
        self.router_id = router_id
        self.loop = loop
        self.passes = 0

    async def frames(self) -> AsyncIterator[list[CsiFrame]]:
        """Batches of frames as their replay time comes; endless when looping."""
        steps_s = np.diff(self.offsets_s)
        typical_step_s = float(np.median(steps_s)) if len(steps_s) else 0.01
        device_shift_s = 0.0
        while True:
            start = time.monotonic()
            i = 0
            while i < len(self.recorded):
                due = float(self.offsets_s[i])
                wait_s = due - (time.monotonic() - start)
                if wait_s > 0:
                    await asyncio.sleep(min(wait_s, MAX_SLEEP_STEP_S))
                    continue
                now_rel = time.monotonic() - start
                j = int(np.searchsorted(self.offsets_s, now_rel, side="right"))
                j = max(j, i + 1)
                arrival_s = time.time()
                batch = [self._restamp(f, arrival_s, device_shift_s) for f in self.recorded[i:j]]
                i = j
                yield batch
            self.passes += 1
            if not self.loop:
                return
            # keep device time increasing across passes so windows see one continuous stream
            first, last = self.recorded[0], self.recorded[-1]
            device_shift_s += float(last.device_time_s - first.device_time_s)
            device_shift_s += max(typical_step_s, 1e-3)

    def close(self) -> None:
        """Nothing to release: the frames are in memory."""

    def _restamp(self, frame: CsiFrame, arrival_s: float, shift_s: float) -> CsiFrame:
        return CsiFrame(
            router_id=self.router_id,
            seq=frame.seq,
            device_time_s=frame.device_time_s + shift_s,
            arrival_time_s=arrival_s,
            csi=frame.csi,
            subcarriers=frame.subcarriers,
            rssi_dbm=frame.rssi_dbm,
            noise_dbm=frame.noise_dbm,
            channel=frame.channel,
            bandwidth_mhz=frame.bandwidth_mhz,
            format=frame.format,
            chipset=frame.chipset,
            source_mac=frame.source_mac,
            agc_db=frame.agc_db,
        )


class FileReplay(FrameReplay):
    """A capture file replayed in time (read whole at start)."""

    def __init__(
        self,
        path: Path,
        *,
        router_id: str,
        fmt: str | None = None,
        chipset: str | None = None,
        speed: float = 1.0,
        loop: bool = True,
    ) -> None:
        if speed <= 0:
            raise SourceError(f"replay speed must be positive, got {speed}")
        result = read_capture(path, fmt=fmt, chipset=chipset, router_id=router_id)
        if not result.frames:
            raise SourceError(f"{path}: no CSI frames to replay")
        super().__init__(
            result.frames,
            router_id=router_id,
            speed=speed,
            loop=loop,
            bad_records=result.bad_records,
        )
