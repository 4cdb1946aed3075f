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


def test_system_events_reach_a_webhook_signed(
    ray_cluster: int, random_checkpoint: Path, tmp_path: Path
) -> None:
    from deployments.app import start_system, stop_system

    receiver = Receiver()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(receiver.start(), loop).result(timeout=30)
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
        asyncio.run_coroutine_threadsafe(receiver.stop(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
