"""The running system delivers its events to a configured webhook, signed."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path

import pytest
from standardwebhooks.webhooks import Webhook

from tests.actors.test_webhooks import SECRET, Receiver
from tests.e2e.conftest import make_site

pytestmark = pytest.mark.slow


def serve_in_thread(receiver: Receiver) -> asyncio.AbstractEventLoop:
    """Run the receiver on a loop of its own thread (the system starts and stops on this
    one, blocking); the loop to stop it with."""
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    asyncio.run_coroutine_threadsafe(receiver.start(), loop).result(timeout=30)
    return loop


def stop_serving(receiver: Receiver, loop: asyncio.AbstractEventLoop) -> None:
    asyncio.run_coroutine_threadsafe(receiver.stop(), loop).result(timeout=30)
    loop.call_soon_threadsafe(loop.stop)


def test_system_events_reach_a_webhook_signed(
    ray_cluster: int, random_checkpoint: Path, tmp_path: Path
) -> None:
    from deployments.app import start_system, stop_system

    receiver = Receiver()
    loop = serve_in_thread(receiver)
    site = make_site(tmp_path, ray_cluster, random_checkpoint, webhooks={
        "allow_cidrs": ["127.0.0.0/8"],
        "endpoints": [{"id": "ha", "url": receiver.url, "secret": SECRET,
                       "events": ["system.started", "router.connected"]}],
    })
    supervisor = start_system(site)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            types = [json.loads(h["body"])["event_type"] for h in list(receiver.got)]
            if "system.started" in types and "router.connected" in types:
                break
            time.sleep(0.2)
        assert "system.started" in types and "router.connected" in types, types
        assert set(types) <= {"system.started", "router.connected"}  # only those asked for
        verifier = Webhook(SECRET.encode())
        for hit in list(receiver.got):
            verifier.verify(hit["body"], hit["headers"])
    finally:
        stop_system(supervisor)
        stop_serving(receiver, loop)


def test_webhooks_registered_through_the_api_deliver_log_redeliver_and_ping(
    ray_cluster: int, random_checkpoint: Path, tmp_path: Path
) -> None:
    import aiohttp

    from deployments.app import start_system, stop_system
    from invispose.security import CONFIG_WRITE
    from tests.e2e.conftest import credential_headers

    receiver = Receiver()
    loop = serve_in_thread(receiver)
    site = make_site(tmp_path, ray_cluster, random_checkpoint,
                     webhooks={"allow_cidrs": ["127.0.0.0/8"]})
    supervisor = start_system(site)
    base = f"http://127.0.0.1:{ray_cluster}/api/v1/webhooks"

    async def run() -> None:
        session = aiohttp.ClientSession(headers=credential_headers(CONFIG_WRITE))
        async with session:
            async with session.post(base, json={"id": "ha", "url": receiver.url}) as resp:
                assert resp.status == 201, await resp.text()
                created = await resp.json()
            secret = created["secret"]  # generated, shown this once
            async with session.get(f"{base}/ha") as resp:
                assert "secret" not in await resp.json()
            async with session.post(base, json={"id": "ha", "url": receiver.url}) as resp:
                assert resp.status == 409
            async with session.post(base, json={"id": "lan", "url": "http://10.0.0.5/x"}
                                    ) as resp:
                assert resp.status == 422  # not in allow_cidrs
            deadline = time.monotonic() + 120
            while not receiver.got:  # the simulated people make events all the time
                assert time.monotonic() < deadline, "no delivery"
                await asyncio.sleep(0.2)
            first = receiver.got[0]
            Webhook(secret.encode()).verify(first["body"], first["headers"])
            async with session.get(f"{base}/ha/deliveries") as resp:
                log = await resp.json()
            entry = next(e for e in log if e["delivered"])
            assert entry["status_code"] == 200 and entry["duration_ms"] >= 0
            seen = len(receiver.got)
            async with session.post(f"{base}/ha/deliveries/{entry['id']}/redeliver") as resp:
                assert resp.status == 202
            wanted = f"msg_ha_{entry['event_id']}"
            while not any(h["headers"]["webhook-id"] == wanted for h in receiver.got[seen:]):
                assert time.monotonic() < deadline, "not redelivered"
                await asyncio.sleep(0.2)
            async with session.post(f"{base}/ha/ping") as resp:
                pinged = await resp.json()
            assert pinged["delivered"] and pinged["status_code"] == 200
            async with session.patch(f"{base}/ha", json={"active": False}) as resp:
                assert (await resp.json())["active"] is False
            async with session.delete(f"{base}/ha") as resp:
                assert resp.status == 204
            async with session.get(f"{base}/ha") as resp:
                assert resp.status == 404

    try:
        asyncio.run(run())
    finally:
        stop_system(supervisor)
        stop_serving(receiver, loop)


def test_a_dispatcher_killed_mid_retry_delivers_after_its_restart(
    ray_cluster: int, random_checkpoint: Path, tmp_path: Path
) -> None:
    import ray

    from actors.common import NAMESPACE, WEBHOOKS_NAME
    from deployments.app import start_system, stop_system

    receiver = Receiver(lambda n: 500 if n <= 2 else 200)
    loop = serve_in_thread(receiver)
    site = make_site(tmp_path, ray_cluster, random_checkpoint, webhooks={
        "allow_cidrs": ["127.0.0.0/8"],
        "endpoints": [{"id": "ha", "url": receiver.url, "secret": SECRET,
                       "events": ["system.started"],
                       "retry_policy": {"max_attempts": 20, "base_delay_s": 1.0,
                                        "max_delay_s": 2.0}}],
    })
    supervisor = start_system(site)
    try:
        deadline = time.monotonic() + 120
        while len(receiver.got) < 2:  # two attempts failed: it is between retries
            assert time.monotonic() < deadline, "no attempts"
            time.sleep(0.05)
        ray.kill(ray.get_actor(WEBHOOKS_NAME, namespace=NAMESPACE), no_restart=False)
        while len(receiver.got) < 3:  # Ray restarts it; the supervisor starts it again
            assert time.monotonic() < deadline, "not delivered after the restart"
            time.sleep(0.1)
        ids = {h["headers"]["webhook-id"] for h in receiver.got}
        assert len(ids) == 1  # the same delivery, completed by the new dispatcher
        assert json.loads(receiver.got[-1]["body"])["event_type"] == "system.started"
    finally:
        stop_system(supervisor)
        stop_serving(receiver, loop)
