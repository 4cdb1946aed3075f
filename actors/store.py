"""StoreActor: the single writer of the InvisPose database."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

import ray

from invispose.schemas import Event, PoseFrame
from invispose.security import ApiKey
from invispose.store import Store

logger = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 0.1  # pose frames are written in batches at most this far apart
PRUNE_INTERVAL_S = 3600.0
#: read methods the API may call through ``query``
QUERIES = frozenset(
    {
        "history_dicts",
        "latest",
        "person",
        "persons",
        "trajectory",
        "events_since",
        "last_event_id",
        "routers",
        "zones",
        "zone",
        "load_snapshot",
        "outbox_due",
        "outbox_heads",
        "webhook",
        "webhooks",
        "outbox_get",
        "deliveries",
        "cursor",
        "stats",
        "keys",
        "key_digests",
        "keys_count",
    }
)


class StoreHost:
    """Runs a ``Store`` on one dedicated thread and flushes pose frames on a timer."""

    def __init__(self, path: str, history_days: float = 7.0) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        self._store = Store(Path(path), history_days=history_days)
        self._tasks: list[asyncio.Task[None]] = []
        self.write_errors = 0

    async def _run(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: fn(*args, **kwargs))

    def _ensure_timers(self) -> None:
        if not self._tasks:
            self._tasks = [
                asyncio.get_running_loop().create_task(self._every(FLUSH_INTERVAL_S, "flush")),
                asyncio.get_running_loop().create_task(self._every(PRUNE_INTERVAL_S, "prune")),
            ]

    async def _every(self, interval_s: float, method: str) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self._run(getattr(self._store, method))
            except Exception:
                self.write_errors += 1
                logger.exception("store %s failed", method)

    async def add_pose_frames(self, frames: list[tuple[str, PoseFrame]]) -> None:
        """Buffer frames; they are written within FLUSH_INTERVAL_S."""
        self._ensure_timers()

        def add_all() -> None:
            for space_id, frame in frames:
                self._store.add_pose_frame(space_id, frame)

        await self._run(add_all)

    async def append_events(self, events: list[Event]) -> list[Event]:
        """Durably store events and return them with their ids (publish only after this)."""
        self._ensure_timers()
        result: list[Event] = await self._run(self._store.append_events, events)
        return result

    async def save_snapshot(self, space_id: str, data: dict[str, Any]) -> None:
        """Keep a tracker's latest state."""
        await self._run(self._store.save_snapshot, space_id, data)

    async def put_router(self, router_id: str, data: dict[str, Any]) -> None:
        """Record a router's configuration."""
        await self._run(self._store.put_router, router_id, data)

    async def put_zone(self, zone_id: str, data: dict[str, Any]) -> None:
        """Record a zone's configuration."""
        await self._run(self._store.put_zone, zone_id, data)

    async def outbox_add_many(self, items: list[tuple[str, int]]) -> list[int]:
        """Owe webhook deliveries (durably; adding one twice is a no-op)."""
        ids: list[int] = await self._run(self._store.outbox_add_many, items)
        return ids

    async def outbox_mark(self, outbox_id: int, delivered: bool, **kwargs: Any
                          ) -> dict[str, Any]:
        """Record one delivery attempt (see Store.outbox_mark)."""
        row: dict[str, Any] = await self._run(self._store.outbox_mark, outbox_id, delivered,
                                              **kwargs)
        return row

    async def put_webhook(self, webhook_id: str, data: dict[str, Any]) -> None:
        """Keep a webhook endpoint registered through the API (durably)."""
        await self._run(self._store.put_webhook, webhook_id, data)

    async def delete_webhook(self, webhook_id: str) -> bool:
        """Remove a registered webhook endpoint."""
        deleted: bool = await self._run(self._store.delete_webhook, webhook_id)
        return deleted

    async def outbox_redeliver(self, delivery_id: int) -> int | None:
        """Owe again the delivery of a log entry."""
        outbox_id: int | None = await self._run(self._store.outbox_redeliver, delivery_id)
        return outbox_id

    async def set_cursor(self, name: str, event_id: int) -> None:
        """Remember the last event a consumer handled."""
        await self._run(self._store.set_cursor, name, event_id)

    async def key_add(self, record: ApiKey, digest: str) -> None:
        """Keep a new API key (durably)."""
        await self._run(self._store.key_add, record, digest)

    async def key_revoke(self, key_id: str, now_s: float) -> bool:
        """Revoke an API key; False if there is no such active key."""
        revoked: bool = await self._run(self._store.key_revoke, key_id, now_s)
        return revoked

    async def keys_touch(self, used: dict[str, float]) -> None:
        """Record API keys' last-used times."""
        await self._run(self._store.keys_touch, used)

    async def flush(self) -> int:
        """Write buffered frames now."""
        written: int = await self._run(self._store.flush)
        return written

    async def query(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Run one read query by name (see QUERIES)."""
        if name not in QUERIES:
            raise ValueError(f"unknown store query {name!r}")
        if name in {"history_dicts", "trajectory", "person", "persons"}:
            await self._run(self._store.flush)  # history includes what was just buffered
        return await self._run(getattr(self._store, name), *args, **kwargs)

    async def ping(self) -> bool:
        """Liveness check."""
        return True

    async def close(self) -> None:
        """Flush and close the database."""
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._run(self._store.close)


StoreActor = ray.remote(StoreHost)


class StoreCalls(Protocol):
    """Store methods called by name, wherever the store is: the StoreActor's reads and
    writes, or a Store in this process."""

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any: ...


class LocalStore:
    """StoreCalls on a Store in this process (tools beside the runtime, tests)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return getattr(self.store, method)(*args, **kwargs)


class ActorStore:
    """StoreCalls on the StoreActor: reads through ``query`` (QUERIES), writes by the same
    name as the Store's method. ``actor`` gives the handle on each call (it may have been
    looked up again since)."""

    def __init__(self, actor: Callable[[], Any]) -> None:
        self.actor = actor

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        handle = self.actor()
        if method in QUERIES:
            return await handle.query.remote(method, *args, **kwargs)
        return await getattr(handle, method).remote(*args, **kwargs)
