"""The embedded default: simulated routers stream through the whole runtime."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import pytest

from tests.e2e.conftest import credential_headers, make_site
from tests.e2e.test_runtime_replay import collect_pose_updates

pytestmark = pytest.mark.slow


def test_default_simulated_site_streams_poses(
    ray_cluster: int, random_checkpoint: Path, tmp_path: Path
) -> None:
    from deployments.app import start_system, stop_system

    site = make_site(tmp_path, ray_cluster, random_checkpoint)
    supervisor = start_system(site)
    try:
        updates = asyncio.run(collect_pose_updates(ray_cluster, 20, timeout_s=90))
        assert len(updates) == 20
        frame_ids = [u["frame_id"] for u in updates]
        assert frame_ids == sorted(frame_ids)
        latency = updates[-1]["metadata"]["latency_ms"]
        assert set(latency) >= {"ingest", "inference", "tracking"}

        async def routers() -> list[dict]:
            url = f"http://127.0.0.1:{ray_cluster}/api/v1/system/routers"
            async with aiohttp.ClientSession(headers=credential_headers()) as session:
                return await (await session.get(url)).json()

        deadline = time.monotonic() + 30
        while True:
            status = {r["id"]: r for r in asyncio.run(routers())}
            if all(r["state"] == "connected" for r in status.values()) or (
                time.monotonic() > deadline
            ):
                break
            time.sleep(0.5)
        assert set(status) == {r.id for r in site.routers}
        for r in status.values():
            assert r["state"] == "connected"
            assert 50 <= r["packets_per_s"] <= 150, r  # 100 Hz minus simulated loss
    finally:
        stop_system(supervisor)


def test_classical_estimator_places_the_demo_people_in_the_room(
    ray_cluster: int, tmp_path: Path
) -> None:
    """`model: classical`: no weights at all; the hop's routers are fused on the floor."""
    from deployments.app import start_system, stop_system

    site = make_site(tmp_path, ray_cluster, tmp_path / "no-such.pt", model="classical")
    assert site.model.estimator == "classical"
    supervisor = start_system(site)
    try:
        updates = asyncio.run(collect_pose_updates(ray_cluster, 40, timeout_s=120))
        assert len(updates) == 40
        size = site.spaces[0].size_m
        placed = 0
        for update in updates:
            for person in update["persons"]:
                x, y, _ = person["keypoints"][11]["position_m"]
                assert -0.5 <= x <= size[0] + 0.5 and -0.5 <= y <= size[1] + 0.5
                placed += 1
        assert placed > 0  # the simulated people move: someone is reported
    finally:
        stop_system(supervisor)


def test_the_gateway_serves_the_stream_on_its_own_port(
    ray_cluster: int, random_checkpoint: Path, tmp_path: Path
) -> None:
    """``serve.stream_port``: the replica's own server speaks the stream protocol past
    Serve's proxy (unfiltered clients get the frame's text as it was encoded), refuses a
    message over ``max_message_bytes`` before reading it whole (close 1009) and counts its
    clients in /system/performance."""
    from deployments.app import start_system, stop_system
    from tests.conftest import free_port

    stream_port = free_port()
    site = make_site(tmp_path, ray_cluster, random_checkpoint,
                     serve={"host": "127.0.0.1", "port": ray_cluster,
                            "stream_port": stream_port})
    supervisor = start_system(site)
    url = f"http://127.0.0.1:{stream_port}/ws/v1/stream"

    async def run() -> None:
        async with aiohttp.ClientSession(headers=credential_headers()) as session:
            async with session.ws_connect(url) as ws:
                hello = await ws.receive_json(timeout=60)
                assert hello["type"] == "connection"
                await ws.send_json({"type": "subscribe", "topic": "pose_updates"})
                updates: list[dict] = []
                while len(updates) < 10:
                    msg = await ws.receive_json(timeout=90)
                    if msg["type"] == "pose_update":
                        updates.append(msg)
                ids = [u["frame_id"] for u in updates]
                assert ids == sorted(ids) and len(set(ids)) == 10
                assert set(updates[-1]) >= {"space_id", "timestamp", "persons", "metadata"}
                perf_url = f"http://127.0.0.1:{ray_cluster}/api/v1/system/performance"
                async with session.get(perf_url) as resp:
                    perf = await resp.json()
                assert perf["stream_server"]["serving"] is True
                assert perf["stream_server"]["clients"] >= 1 and perf["websocket_clients"] >= 1
                assert perf["end_to_end_ms"]["samples"] > 0
            async with session.ws_connect(url) as ws:
                await ws.receive_json(timeout=60)
                await ws.send_str("x" * (site.serve.websocket.max_message_bytes + 1))
                msg = await ws.receive(timeout=60)
                assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
                assert ws.close_code == 1009
            async with session.ws_connect(url) as ws:  # the server goes on
                assert (await ws.receive_json(timeout=60))["type"] == "connection"

    try:
        asyncio.run(run())
    finally:
        stop_system(supervisor)
