"""A capture replayed as a live source: pacing, re-stamping and looping."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pytest

from invispose.csi.replay import FileReplay
from invispose.errors import SourceError


def collect(replay: FileReplay, n_frames: int) -> tuple[list, float]:
    async def run() -> tuple[list, float]:
        got: list = []
        start = time.monotonic()
        async for batch in replay.frames():
            got.extend(batch)
            if len(got) >= n_frames:
                break
        return got, time.monotonic() - start

    return asyncio.run(run())


def test_replay_keeps_the_recorded_pace_scaled_by_speed(shared_data: Path) -> None:
    replay = FileReplay(
        shared_data / "esp32/example_100hz_pitraffic.csv", router_id="bed", speed=10.0
    )
    frames, elapsed_s = collect(replay, 200)
    recorded_s = frames[199].device_time_s - frames[0].device_time_s
    assert elapsed_s >= 0.8 * recorded_s / 10.0  # not faster than asked
    assert all(f.router_id == "bed" for f in frames)
    arrivals = np.array([f.arrival_time_s for f in frames])
    assert np.all(np.diff(arrivals) >= 0) and abs(arrivals[-1] - time.time()) < 5.0


def test_looping_continues_device_time(shared_data: Path) -> None:
    replay = FileReplay(shared_data / "intel5300/example.dat", router_id="lab", speed=50.0)
    frames, _ = collect(replay, 60)  # 26 records a pass
    device = np.array([f.device_time_s for f in frames])
    assert replay.passes >= 2
    assert np.all(np.diff(device) > 0)  # one continuous stream for the windower


def test_a_capture_without_frames_is_a_source_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("type,role,mac\n")
    with pytest.raises(SourceError, match="no CSI frames"):
        FileReplay(empty, router_id="x")
    with pytest.raises(SourceError, match="speed"):
        FileReplay(empty, router_id="x", speed=0)
