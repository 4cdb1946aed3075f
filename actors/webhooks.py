"""Webhook delivery: the store's events to the configured endpoints, durably, in order.

``WebhookDispatcher`` reads new events from the store (after its cursor ``webhooks``),
owes each matching endpoint a delivery in the outbox (durable, idempotent), advances the
cursor, and then attempts each endpoint's oldest due delivery: one at a time per endpoint
(its events arrive in order), endpoints in parallel. Each attempt and its outcome go to
the delivery log; failures are retried per the endpoint's ``retry_policy`` (exponential
backoff with jitter, ``Retry-After`` honoured); 410 Gone stops deliveries to that endpoint
until the next start. A dispatcher killed mid-retry finds the outbox as it left it.

The connection goes only to an address checked by ``invispose.webhooks.address_allowed``:
names resolve through ``CheckedResolver`` (the connector connects to what it returns),
IP literals are checked before the request; redirects are not followed.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import time
import urllib.parse
from collections.abc import Sequence
from typing import Any

import aiohttp
import ray
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

from actors.store import ActorStore, StoreCalls
from invispose.config import WebhookConfig, WebhooksConfig
from invispose.schemas import Event
from invispose.webhooks import (
    Attempt,
    address_allowed,
    delivery_request,
    parse_retry_after,
    retry_delay,
    wants,
)

logger = logging.getLogger(__name__)

CURSOR = "webhooks"
POLL_S = 0.5  # new events and due retries are looked for this often
EVENTS_PER_POLL = 500
MAX_RESPONSE_BYTES = 64 * 1024  # read of an endpoint's answer (it is only logged)


class RefusedAddress(OSError):
    """Every address of the endpoint is one deliveries may not reach."""


class CheckedResolver(AbstractResolver):
    """Resolves names and keeps only addresses deliveries may reach."""

    def __init__(self, allow_cidrs: Sequence[str]) -> None:
        self.allow_cidrs = list(allow_cidrs)
        self._inner = ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        allowed = [r for r in found if address_allowed(r["host"], self.allow_cidrs)]
        if not allowed:
            raise RefusedAddress(
                f"{host} resolves only to addresses deliveries may not reach "
                f"({', '.join(sorted({r['host'] for r in found}))}; see webhooks.allow_cidrs)"
            )
        return allowed

    async def close(self) -> None:
        await self._inner.close()


def literal_refused(url: str, allow_cidrs: Sequence[str]) -> str | None:
    """Why an IP-literal URL may not be called (None: it may, or it names a host)."""
    host = urllib.parse.urlsplit(url).hostname or ""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return None
    if address_allowed(host, allow_cidrs):
        return None
    return f"{host} is not an address deliveries may reach (see webhooks.allow_cidrs)"


async def attempt_delivery(
    session: aiohttp.ClientSession, webhook: WebhookConfig, event: Event, event_id: int,
    allow_cidrs: Sequence[str],
) -> Attempt:
    """POST one event to one endpoint, once."""
    refused = literal_refused(webhook.url, allow_cidrs)
    if refused is not None:
        return Attempt(False, error=refused, final=True)
    body, headers = delivery_request(webhook, event, event_id, time.time())
    started = time.perf_counter()
    try:
        async with session.post(
            webhook.url, data=body, headers=headers, allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=webhook.timeout_s),
        ) as resp:
            await resp.content.read(MAX_RESPONSE_BYTES)
            ms = (time.perf_counter() - started) * 1e3
            ok = 200 <= resp.status < 300
            return Attempt(
                ok, resp.status, None if ok else f"HTTP {resp.status}",
                parse_retry_after(resp.headers.get("Retry-After"), time.time()), ms,
            )
    except RefusedAddress as exc:
        return Attempt(False, error=str(exc), final=True)
    except aiohttp.ClientConnectorError as exc:  # the resolver's refusal arrives wrapped
        if isinstance(exc.os_error, RefusedAddress):
            return Attempt(False, error=str(exc.os_error), final=True)
        return Attempt(False, error=f"{type(exc).__name__}: {exc}"[:300],
                       duration_ms=(time.perf_counter() - started) * 1e3)
    except TimeoutError:
        return Attempt(False, error=f"no answer within {webhook.timeout_s:g} s",
                       duration_ms=(time.perf_counter() - started) * 1e3)
    except (aiohttp.ClientError, OSError) as exc:
        return Attempt(False, error=f"{type(exc).__name__}: {exc}"[:300],
                       duration_ms=(time.perf_counter() - started) * 1e3)


class WebhookDispatcher:
    """Delivers the store's events to the configured endpoints (see the module doc)."""

    def __init__(self, config: WebhooksConfig, store: StoreCalls) -> None:
        self.config = config
        self.configured = {w.id: w for w in config.endpoints}
        self.endpoints = {w.id: w for w in config.endpoints if w.enabled}
        self.store = store
        self.gone: set[str] = set()  # answered 410: nothing more this run
        self.counters = {"attempts": 0, "delivered": 0, "failed": 0, "retries": 0,
                         "errors": 0}
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(resolver=CheckedResolver(self.config.allow_cidrs),
                                             limit_per_host=4)
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    async def start_from_now(self) -> None:
        """Set a cursor that was never set to the newest stored event."""
        if await self.store.call("cursor", CURSOR) == 0:
            newest: int = await self.store.call("last_event_id")
            await self.store.call("set_cursor", CURSOR, newest)

    async def _load_endpoints(self) -> None:
        """The config's endpoints and those registered through the API (which cannot
        replace a configured id), enabled ones only."""
        endpoints = dict(self.configured)
        stored: dict[str, dict[str, Any]] = await self.store.call("webhooks")
        for webhook_id, data in stored.items():
            if webhook_id in endpoints:
                continue
            try:
                endpoints[webhook_id] = WebhookConfig.model_validate(data)
            except ValueError as exc:
                logger.warning("webhook %s in the store is not valid (%s); skipped",
                               webhook_id, exc)
        self.endpoints = {k: w for k, w in endpoints.items() if w.enabled}

    async def step(self) -> int:
        """Owe new events' deliveries, then attempt what is due; the attempts made."""
        await self._load_endpoints()
        cursor: int = await self.store.call("cursor", CURSOR)
        events: list[Event] = await self.store.call("events_since", cursor, EVENTS_PER_POLL)
        owed = [(w.id, int(e.id)) for e in events if e.id is not None
                for w in self.endpoints.values() if wants(w, e.type) and w.id not in self.gone]
        if owed:
            await self.store.call("outbox_add_many", owed)
        if events and events[-1].id is not None:
            await self.store.call("set_cursor", CURSOR, int(events[-1].id))
        heads = [row for row in await self.store.call("outbox_heads", time.time())
                 if row["webhook_id"] in self.endpoints]
        await asyncio.gather(*(self._deliver(row) for row in heads))
        return len(heads)

    async def _deliver(self, row: dict[str, Any]) -> None:
        webhook = self.endpoints[row["webhook_id"]]
        if webhook.id in self.gone:
            await self.store.call("outbox_mark", row["id"], False,
                                  error="endpoint answered 410 Gone earlier")
            return
        outcome = await attempt_delivery(self._client(), webhook, row["event"],
                                         row["event_id"], self.config.allow_cidrs)
        self.counters["attempts"] += 1
        attempts = int(row["attempts"]) + 1
        delay = retry_delay(webhook.retry_policy, attempts, outcome)
        if outcome.gone:
            self.gone.add(webhook.id)
            logger.warning("webhook %s answered 410 Gone: no more deliveries this run",
                           webhook.id)
        await self.store.call(
            "outbox_mark", row["id"], outcome.delivered, status_code=outcome.status,
            error=outcome.error, duration_ms=round(outcome.duration_ms, 3),
            next_attempt_at=None if delay is None else time.time() + delay,
        )
        if outcome.delivered:
            self.counters["delivered"] += 1
        elif delay is None:
            self.counters["failed"] += 1
            logger.warning("webhook %s: event %s given up after %d attempts (%s)",
                           webhook.id, row["event_id"], attempts, outcome.error)
        else:
            self.counters["retries"] += 1

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Step every POLL_S until ``stop`` (errors are counted and logged, never fatal)."""
        stop = stop or asyncio.Event()
        try:
            while not stop.is_set():
                try:
                    await self.step()
                except Exception:
                    self.counters["errors"] += 1
                    logger.exception("webhooks: step failed")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), POLL_S)
        finally:
            await self.close()

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()


class WebhookHost:
    """The dispatcher as an actor: started by the supervisor when endpoints exist."""

    def __init__(self, site: dict[str, Any], store: Any) -> None:
        from invispose.config import SiteConfig

        config = SiteConfig.model_validate(site).webhooks
        self.dispatcher = WebhookDispatcher(config, ActorStore(lambda: store))
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Begin delivering (idempotent). On the very first start the cursor is set to the
        newest stored event: endpoints get what happens from now on, not the history."""
        if self._task is None or self._task.done():
            await self.dispatcher.start_from_now()
            self._task = asyncio.get_running_loop().create_task(self.dispatcher.run())

    async def stats(self) -> dict[str, Any]:
        """Counters, and the endpoints that answered 410."""
        return {**self.dispatcher.counters, "gone": sorted(self.dispatcher.gone)}

    async def ping(self) -> bool:
        """Liveness check."""
        return True


WebhookActor = ray.remote(WebhookHost)
