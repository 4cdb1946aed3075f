"""A space whose hops are slower than the configured budget raises
alert.performance_degraded: stored, readable at /api/v1/events, and sent to stream
clients subscribed to system_alerts."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import pytest

from tests.e2e.conftest import credential_headers, make_site

pytestmark = pytest.mark.slow


def test_slow_hops_raise_performance_degraded(
    ray_cluster: int, random_checkpoint: Path, tmp_path: Path
) -> None:
    from deployments.app import start_system, stop_system

    # a 1 ms budget no hop meets; repeated every second while it lasts
    site = make_site(tmp_path, ray_cluster, random_checkpoint,
                     alerts={"latency_p95_ms": 1.0, "window_s": 5.0, "repeat_s": 1.0,
                             # anyone present half a second within 100 m is "inactive"
                             "inactivity_s": 0.5, "inactivity_radius_m": 100.0})
    supervisor = start_system(site)
    base = f"http://127.0.0.1:{ray_cluster}"

    async def run() -> None:
        async with aiohttp.ClientSession(headers=credential_headers()) as session:
            async with session.ws_connect(f"{base}/ws/v1/stream") as ws:
                await ws.send_json({"type": "subscribe", "topic": "system_alerts"})
                deadline = time.monotonic() + 120
                while True:
                    msg = await ws.receive_json(timeout=max(1.0, deadline - time.monotonic()))
                    if msg["type"] == "system_alert":
                        assert msg["event"] == "alert.performance_degraded", msg
                        assert msg["data"]["metric"] == "hop_latency_p95_ms"
                        break
                    assert time.monotonic() < deadline, "no alert on the stream"
            url = f"{base}/api/v1/events?type=alert.performance_degraded"
            async with session.get(url) as resp:
                stored = await resp.json()
            url = f"{base}/api/v1/events?type=analytics.threshold_exceeded"
            while True:  # the simulated people are present from the start
                async with session.get(url) as resp:
                    inactive = await resp.json()
                if inactive:
                    break
                assert time.monotonic() < deadline, "no inactivity alert"
                await asyncio.sleep(0.5)
            # the rules changed live through the API
            rules_url = f"{base}/api/v1/alerts/rules"
            async with session.patch(rules_url, json={"latency_p95_ms": 250.0}) as resp:
                assert resp.status == 200 and (await resp.json())["latency_p95_ms"] == 250.0
            async with session.get(rules_url) as resp:
                assert (await resp.json())["latency_p95_ms"] == 250.0
            async with session.patch(rules_url, json={"window_s": -1}) as resp:
                assert resp.status == 422 and "window_s" in (await resp.json())["detail"]
            async with session.patch(rules_url, json={"no_such_rule": 1}) as resp:
                assert resp.status == 422
        assert stored and stored[0]["data"]["threshold"] == 1.0
        assert stored[0]["data"]["value"] > 1.0 and stored[0]["space_id"] == "living_room"
        assert inactive[0]["data"]["metric"] == "inactive_s"
        assert inactive[0]["data"]["person_id"].startswith("person_")

    try:
        asyncio.run(run())
    finally:
        stop_system(supervisor)
