"""Webhook deliveries to a real aiohttp receiver on loopback, from a real store file:
signatures the standardwebhooks verifier accepts, order, retries, Retry-After, 410, a
receiver that is down for a while, a dispatcher replaced mid-retry, refused addresses."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from standardwebhooks.webhooks import Webhook

from actors.store import LocalStore
from actors.webhooks import WebhookDispatcher
from invispose.config import WebhooksConfig
from invispose.schemas import Event
from invispose.store import Store
from invispose.webhooks import Attempt, retry_delay
from tests.conftest import free_port

SECRET = "receiver-secret-0123456789"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Receiver:
    """An HTTP endpoint on loopback that records what it was sent."""

    def __init__(self, answer: Callable[[int], int | tuple[int, dict[str, str]]] | None = None,
                 stall_first_s: float = 0.0) -> None:
        self.port = free_port()
        self.got: list[dict[str, Any]] = []
        self.answer = answer or (lambda n: 200)
        self.stall_first_s = stall_first_s  # the first request is answered this late
        self.runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.got.append({"body": body, "headers": dict(request.headers), "t": time.monotonic()})
        if len(self.got) == 1 and self.stall_first_s:
            await asyncio.sleep(self.stall_first_s)
        answer = self.answer(len(self.got))
        status, headers = answer if isinstance(answer, tuple) else (answer, {})
        return web.Response(status=status, headers=headers)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"


def config(url: str, allow: list[str] | None = None, timeout_s: float = 2.0,
           **policy: Any) -> WebhooksConfig:
    return WebhooksConfig.model_validate({
        "allow_cidrs": ["127.0.0.0/8"] if allow is None else allow,
        "endpoints": [{"id": "ha", "url": url, "secret": SECRET, "events": ["*"],
                       "timeout_s": timeout_s,
                       "retry_policy": {"base_delay_s": 0.05, "max_delay_s": 2.0, **policy}}],
    })


def store_with_events(tmp_path: Path, n: int) -> Store:
    store = Store(tmp_path / "s.db")
    now = dt.datetime.now(dt.UTC)
    store.append_events([Event(type="person.fall_detected", timestamp=now, space_id="lab",
                               data={"person_id": f"person_{i}", "confidence": 0.9})
                         for i in range(n)])
    return store


async def until(dispatcher: WebhookDispatcher, done: Callable[[], bool], timeout_s: float = 60
                ) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, "condition not reached"
        await dispatcher.step()
        await asyncio.sleep(0.02)


async def deliver_until(receiver: Receiver, store: Store, hooks: WebhooksConfig,
                        done: Callable[[], bool]) -> WebhookDispatcher:
    """Serve ``receiver`` and step a dispatcher over ``store`` until ``done``; both closed
    after (the dispatcher is returned for its counters)."""
    await receiver.start()
    dispatcher = WebhookDispatcher(hooks, LocalStore(store))
    try:
        await until(dispatcher, done)
    finally:
        await dispatcher.close()
        await receiver.stop()
    return dispatcher


def test_events_arrive_in_order_signed_as_both_verifiers_expect(tmp_path: Path) -> None:
    async def run() -> None:
        receiver = Receiver()
        store = store_with_events(tmp_path, 5)
        await deliver_until(receiver, store, config(receiver.url),
                            lambda: len(receiver.got) == 5)
        verifier = Webhook(SECRET.encode())
        people = []
        for hit in receiver.got:
            payload = verifier.verify(hit["body"], hit["headers"])  # raises if not valid
            assert set(payload) >= {"event_type", "timestamp", "data"}
            people.append(payload["data"]["person_id"])
            mac = hmac.new(SECRET.encode(), hit["body"], hashlib.sha256).hexdigest()
            assert hit["headers"]["X-Signature"] == f"sha256={mac}"  # the seed's signature
            assert hit["headers"]["X-Event-Type"] == "person.fall_detected"
            assert hit["headers"]["X-Delivery-ID"] == hit["headers"]["webhook-id"]
        assert people == [f"person_{i}" for i in range(5)]
        assert [d["delivered"] for d in store.deliveries("ha")] == [True] * 5
        store.close()

    asyncio.run(run())


def test_a_500_is_retried_with_the_same_id_and_retry_after_honoured(tmp_path: Path) -> None:
    async def run() -> None:
        answers = {1: 500, 2: (503, {"Retry-After": "1"})}
        receiver = Receiver(lambda n: answers.get(n, 200))
        store = store_with_events(tmp_path, 2)
        await deliver_until(receiver, store, config(receiver.url),
                            lambda: len(receiver.got) == 4)
        ids = [h["headers"]["webhook-id"] for h in receiver.got]
        assert ids[0] == ids[1] == ids[2] != ids[3]  # the first event until it got through
        assert receiver.got[2]["t"] - receiver.got[1]["t"] >= 0.9  # Retry-After: 1
        log = store.deliveries("ha")[::-1]
        assert [(d["attempt"], d["status_code"], d["delivered"]) for d in log] == [
            (1, 500, False), (2, 503, False), (3, 200, True), (1, 200, True)]
        store.close()

    asyncio.run(run())


def test_an_endpoint_that_does_not_answer_in_time_is_tried_again(tmp_path: Path) -> None:
    async def run() -> None:
        receiver = Receiver(stall_first_s=3.0)
        store = store_with_events(tmp_path, 1)
        await deliver_until(receiver, store, config(receiver.url, timeout_s=0.5),
                            lambda: any(d["delivered"] for d in store.deliveries("ha")))
        log = store.deliveries("ha")[::-1]
        assert log[0]["status_code"] is None and "no answer within 0.5 s" in log[0]["error"]
        assert log[-1]["delivered"] and log[-1]["attempt"] == len(log)
        ids = {h["headers"]["webhook-id"] for h in receiver.got}
        assert len(ids) == 1  # the same delivery, tried again
        store.close()

    asyncio.run(run())


def test_410_gone_stops_deliveries_and_a_4xx_is_not_retried(tmp_path: Path) -> None:
    async def run() -> None:
        receiver = Receiver(lambda n: 410)
        store = store_with_events(tmp_path, 3)
        dispatcher = await deliver_until(receiver, store, config(receiver.url),
                                         lambda: len(store.deliveries("ha")) == 3)
        assert len(receiver.got) == 1 and dispatcher.gone == {"ha"}  # one call, then none
        assert [d["error"] for d in store.deliveries("ha")][:2] == [
            "endpoint answered 410 Gone earlier"] * 2
        policy = config("http://x").endpoints[0].retry_policy
        assert retry_delay(policy, 1, Attempt(False, 404)) is None
        assert retry_delay(policy, 1, Attempt(False, 500)) is not None
        store.close()

    asyncio.run(run())


def test_a_receiver_down_for_a_while_then_gets_every_event_after_a_restart(
    tmp_path: Path,
) -> None:
    async def run() -> None:
        receiver = Receiver()  # not started: connections are refused
        store = store_with_events(tmp_path, 3)
        first = WebhookDispatcher(config(receiver.url, max_attempts=50), LocalStore(store))
        await until(first, lambda: len(store.deliveries("ha")) >= 3)  # failing attempts
        await first.close()  # the dispatcher goes (as a killed actor would), mid-retry
        assert not any(d["delivered"] for d in store.deliveries("ha"))
        await receiver.start()
        second = WebhookDispatcher(config(receiver.url, max_attempts=50), LocalStore(store))
        try:
            await until(second, lambda: len(receiver.got) == 3)
        finally:
            await second.close()
            await receiver.stop()
        people = [json.loads(h["body"])["data"]["person_id"] for h in receiver.got]
        assert people == ["person_0", "person_1", "person_2"]
        store.close()

    asyncio.run(run())


def test_loopback_and_private_targets_are_refused_unless_allowed(tmp_path: Path) -> None:
    async def run() -> None:
        receiver = Receiver()
        await receiver.start()
        try:
            for name, url in (("literal", receiver.url),
                              ("name", receiver.url.replace("127.0.0.1", "localhost"))):
                (tmp_path / name).mkdir()
                store = store_with_events(tmp_path / name, 1)
                dispatcher = WebhookDispatcher(config(url, allow=[]), LocalStore(store))
                try:
                    await until(dispatcher, lambda s=store: len(s.deliveries("ha")) == 1)
                    await dispatcher.step()  # and nothing more: refused is final
                finally:
                    await dispatcher.close()
                (last,) = store.deliveries("ha")
                assert not last["delivered"] and "allow_cidrs" in last["error"], last
                store.close()
        finally:
            await receiver.stop()
        assert receiver.got == []  # nothing ever connected

    asyncio.run(run())
