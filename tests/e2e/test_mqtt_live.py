"""While the system runs, a subscriber on the real broker sees the seed's topics and the
Home Assistant discovery configs; a clean stop says ``stopped``."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import aiohttp
import aiomqtt
import pytest

from tests.actors.test_mqtt import Subscriber, clear_retained, retained
from tests.e2e.conftest import credential_headers, make_site

pytestmark = pytest.mark.slow


def test_a_broker_subscriber_sees_topics_and_discovery_while_it_runs(
    ray_cluster: int, random_checkpoint: Path, tmp_path: Path
) -> None:
    from deployments.app import start_system, stop_system

    prefix = f"ive2e_{uuid.uuid4().hex[:8]}"
    site = make_site(tmp_path, ray_cluster, random_checkpoint, mqtt={
        "url": "mqtt://127.0.0.1:1883", "topic_prefix": prefix,
        "discovery_prefix": f"{prefix}_ha", "status_interval_s": 1.0})

    async def run() -> None:
        sub = Subscriber()
        async with sub.watching(f"{prefix}/#", f"{prefix}_ha/#"):
            loop = asyncio.get_running_loop()  # start and stop block: off the loop
            supervisor = loop.run_in_executor(None, start_system, site)
            try:
                assert (await sub.wait_for(f"{prefix}/availability", timeout_s=120))[0] \
                    == "online"
                current, qos, _ = await sub.wait_for(f"{prefix}/pose/current", timeout_s=120)
                assert qos == 0 and current["space_id"] == "living_room"
                await sub.wait_for(f"{prefix}/pose/zone/sofa/occupancy")
                status, qos, _ = await sub.wait_for(f"{prefix}/system/status",
                                                    lambda v: v.get("routers") == 3, 60)
                assert qos == 1 and status["status"] in ("running", "degraded")
                await sub.wait_for(f"{prefix}/events", timeout_s=60)
                for router in ("router_a", "router_b", "router_c"):
                    await sub.wait_for(
                        f"{prefix}_ha/binary_sensor/invispose_invispose_demo_{router}_motion/"
                        "config")
                await sub.wait_for(
                    f"{prefix}_ha/binary_sensor/invispose_invispose_demo_sofa_occupied/config")
                # a zone changed over MQTT, live: answered, and the API shows it
                async with aiomqtt.Client("127.0.0.1", 1883) as cmd:
                    topic = f"{prefix}/command/zone/sofa/configure"
                    await cmd.publish(topic, json.dumps({"max_occupancy": -1}), qos=2)
                    await cmd.publish(topic, json.dumps({"space": "attic"}), qos=2)
                    await cmd.publish(topic, json.dumps({"max_occupancy": 5,
                                                         "name": "Big sofa"}), qos=2)
                reply_topic = f"{prefix}/response/zone/sofa/configure"
                refused, _, _ = await sub.wait_for(reply_topic, lambda v: "max_occupancy" in
                                                   v.get("error", ""))
                assert refused["success"] is False
                fixed, _, _ = await sub.wait_for(reply_topic, lambda v: "cannot change" in
                                                 v.get("error", ""))
                ok, _, _ = await sub.wait_for(reply_topic, lambda v: v["success"])
                assert ok["zone"]["max_occupancy"] == 5
                headers = credential_headers()
                async with aiohttp.ClientSession(headers=headers) as http:
                    url = f"http://127.0.0.1:{ray_cluster}/api/v1/pose/zones/sofa"
                    async with http.get(url) as resp:
                        zone = await resp.json()
                assert zone["max_occupancy"] == 5 and zone["name"] == "Big sofa"
            finally:
                await loop.run_in_executor(None, stop_system, await supervisor)
            assert (await retained(1883, f"{prefix}/availability"))[0] == "stopped"
        await clear_retained(prefix)

    asyncio.run(run())
