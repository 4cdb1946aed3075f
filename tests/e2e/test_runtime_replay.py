"""The real captures replay through `file` routers into poses on REST and the WebSocket."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.e2e.conftest import make_site

pytestmark = pytest.mark.slow


def file_router(router_id: str, path: Path, rx: int) -> dict[str, Any]:
    return {
        "id": router_id,
        "space": "living_room",
        "kind": "file",
        "source": {"path": str(path), "speed": 1.0, "loop": True},
        "tx_positions_m": [[0.3, 0.2, 1.5]],
        "rx_positions_m": [[5.7, 4.8 - 0.03 * i, 1.2] for i in range(rx)],
    }


async def collect_pose_updates(port: int, n: int, timeout_s: float) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{port}/ws/v1/stream"
    got: list[dict[str, Any]] = []
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        hello = await ws.receive_json(timeout=timeout_s)
        assert hello["type"] == "connection" and hello["client_id"]
        await ws.send_json({"type": "subscribe", "topic": "pose_updates",
                            "filters": {"min_confidence": 0.0}})
        deadline = time.monotonic() + timeout_s
        while len(got) < n and time.monotonic() < deadline:
            msg = await ws.receive_json(timeout=deadline - time.monotonic())
            if msg["type"] == "pose_update":
                got.append(msg)
    return got


def test_real_captures_replay_to_websocket_and_history(
    ray_cluster: int, random_checkpoint: Path, shared_data: Path, tmp_path: Path
) -> None:
    from deployments.app import start_system, stop_system

    routers = [
        file_router("esp32", shared_data / "esp32/example_100hz_pitraffic.csv", 1),
        file_router("intel", shared_data / "intel5300/los_100.dat", 3),
        file_router("nexmon", shared_data / "nexmon/example_4366c0.pcap", 1),
    ]
    site = make_site(tmp_path, ray_cluster, random_checkpoint, routers=routers)
    started = time.time()
    supervisor = start_system(site)
    try:
        updates = asyncio.run(collect_pose_updates(ray_cluster, 10, timeout_s=60))
        assert len(updates) == 10
        for update in updates:
            for person in update["persons"]:
                assert len(person["keypoints"]) == 17
            assert "latency_ms" in update["metadata"]

        async def rest() -> tuple[Any, ...]:
            base = f"http://127.0.0.1:{ray_cluster}/api/v1"
            async with aiohttp.ClientSession() as s:
                current = await (await s.get(f"{base}/pose/current?min_confidence=0")).json()
                routers_resp = await (await s.get(f"{base}/system/routers")).json()
                params = {"start_time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(started)),
                          "end_time": time.strftime("%Y-%m-%dT%H:%M:%S",
                                                    time.gmtime(time.time() + 5)),
                          "limit": "1000"}
                history = await s.get(f"{base}/pose/history", params=params)
                return current, routers_resp, history.status, await history.json()

        current, router_status, status, history = asyncio.run(rest())
        assert "frame_id" in current and "persons" in current
        by_id = {r["id"]: r for r in router_status}
        assert set(by_id) == {"esp32", "intel", "nexmon"}
        for r in by_id.values():
            assert r["packets"] > 0, r
            assert r["source_errors"] == 0, r
        assert status == 200 and len(history) > 0
        assert json.dumps(history[0])  # serialisable in the seed shape
    finally:
        stop_system(supervisor)
