"""The real captures replay through `file` routers into poses on REST and the WebSocket."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.e2e.conftest import credential_headers, make_site

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
    session = aiohttp.ClientSession(headers=credential_headers())
    async with session, session.ws_connect(url) as ws:
        hello = await ws.receive_json(timeout=timeout_s)
        assert hello["type"] == "connection" and hello["client_id"]
        await ws.send_json(
            {"type": "subscribe", "topic": "pose_updates", "filters": {"min_confidence": 0.0}}
        )
        deadline = time.monotonic() + timeout_s
        while len(got) < n and time.monotonic() < deadline:
            msg = await ws.receive_json(timeout=deadline - time.monotonic())
            if msg["type"] == "pose_update":
                got.append(msg)
    return got


async def check_rest_endpoints(port: int) -> None:
    """Every seed REST resource answers in its shape; bad parameters are rejected."""
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession(headers=credential_headers()) as s:

        async def get(path: str, want: int = 200) -> Any:
            async with s.get(base + path) as resp:
                assert resp.status == want, (path, resp.status, await resp.text())
                return await resp.json() if "json" in resp.content_type else await resp.text()

        status = await get("/api/v1/system/status")
        assert set(status) >= {
            "status",
            "uptime_seconds",
            "active_routers",
            "total_persons_tracked",
            "current_fps",
            "average_latency_ms",
            "memory_usage_mb",
            "gpu_usage_percent",
        }
        assert status["active_routers"] == 3
        health = await get("/api/v1/system/health")
        assert health["status"] == "healthy" and "store" in health["components"]
        router = await get("/api/v1/system/routers/intel")
        assert {
            "state",
            "packets_per_s",
            "drops",
            "bad_records",
            "last_seen",
            "motion_score",
        } <= set(router)
        await get("/api/v1/system/routers/nope", 404)
        perf = await get("/api/v1/system/performance")
        assert {"fps", "end_to_end_ms", "batch", "drops"} <= set(perf)
        zones = await get("/api/v1/pose/zones")
        assert {z["zone_id"] for z in zones} == {"sofa", "door"}
        assert (await get("/api/v1/pose/zones/sofa"))["name"] == "Sofa"
        await get("/api/v1/pose/zones/attic", 404)
        persons = await get("/api/v1/pose/persons")
        for person in persons[:1]:
            detail = await get(f"/api/v1/pose/persons/{person['person_id']}?include_history=true")
            assert {"first_seen", "last_seen", "average_confidence", "movement_history"} <= set(
                detail
            )
        await get("/api/v1/pose/persons/person_999999", 404)
        await get(
            "/api/v1/pose/history?start_time=2026-01-01T00:00:00&end_time=2026-01-02T00:00:00"
            "&limit=5000",
            422,
        )
        await get("/api/v1/pose/current?min_confidence=7", 422)
        assert "/api/v1/pose/current" in (await get("/openapi.json"))["paths"]
        # stored events read back by id, as a lagging stream client is told to
        events = await get("/api/v1/events?after_id=0&limit=1000")
        assert events[0]["type"] == "system.started" and events[0]["id"] >= 1
        ids = [e["id"] for e in events]
        assert ids == sorted(ids)
        later = await get(f"/api/v1/events?after_id={ids[0]}&limit=1000")
        assert [e["id"] for e in later][: len(ids) - 1] == ids[1:]  # more may have come
        started = await get("/api/v1/events?type=system.started")
        assert {e["type"] for e in started} == {"system.started"}
        await get("/api/v1/events?after_id=-1", 422)


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
            async with aiohttp.ClientSession(headers=credential_headers()) as s:
                current = await (await s.get(f"{base}/pose/current?min_confidence=0")).json()
                routers_resp = await (await s.get(f"{base}/system/routers")).json()
                params = {
                    "start_time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(started)),
                    "end_time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() + 5)),
                    "limit": "1000",
                }
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
        asyncio.run(check_rest_endpoints(ray_cluster))
    finally:
        stop_system(supervisor)
