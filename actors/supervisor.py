"""Supervisor: builds the actor system from the config, watches it, aggregates health."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections import deque
from typing import Any

import ray
from pydantic import ValidationError

from actors.bus import BusActor
from actors.common import (
    BUS_NAME,
    MQTT_NAME,
    STORE_NAME,
    WEBHOOKS_NAME,
    actor_options,
    router_group_name,
    space_name,
)
from actors.mqtt import MqttActor
from actors.router import RouterGroupActor
from actors.space import SpaceActor
from actors.store import StoreActor
from actors.webhooks import WebhookActor
from invispose import __version__
from invispose import events as ev
from invispose.bus import EVENT_TOPIC, event_message
from invispose.config import AlertConfig, RouterConfig, SiteConfig, ZoneConfig
from invispose.schemas import Event

logger = logging.getLogger(__name__)

WATCH_INTERVAL_S = 1.0
PING_TIMEOUT_S = 2.0
MAX_UNSENT_EVENTS = 10_000  # router events held while the store is down (bounded)


def _log_failure(task: asyncio.Task[Any]) -> None:
    """Done-callback of a background task: its exception is logged, never lost."""
    if not task.cancelled() and task.exception() is not None:
        logger.error("supervisor: %s failed", task.get_name(), exc_info=task.exception())


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class SupervisorHost:
    """Starts store, bus, one tracker per space and one actor per router; watches them."""

    def __init__(self, site: dict[str, Any]) -> None:
        self.site_dict = site
        self.site = SiteConfig.model_validate(site)
        self.store: Any = None
        self.bus: Any = None
        self.webhooks: Any = None  # the webhook dispatcher
        self.mqtt: Any = None  # the MQTT bridge, when mqtt.enabled
        self.zones_live: dict[str, dict[str, Any]] = {}  # zones changed since start
        self.alerts_live: dict[str, Any] | None = None  # alert rules changed since start
        self.trackers: dict[str, Any] = {}  # space id -> SpaceActor (tracker + routers)
        self.groups: dict[str, list[Any]] = {}  # space id -> its RouterGroupActors
        # the routers each host (SpaceActor or RouterGroupActor) should run
        self.assigned: dict[Any, set[str]] = {}  # host -> router ids
        self.routers: dict[str, RouterConfig] = {}  # the running routers' configs
        self.router_states: dict[str, str] = {}
        # router events seen but not yet stored (the store may be restarting), oldest first
        self._unsent: deque[tuple[str, dict[str, Any], str]] = deque(maxlen=MAX_UNSENT_EVENTS)
        self.router_status: dict[str, dict[str, Any]] = {}
        self.started_s = time.time()
        self._watch: asyncio.Task[None] | None = None
        self._started = False
        # a call that arrives while start() runs (a health probe) waits for it: a second
        # start would replace the handles the first made, and the actors they own would die
        self._start_lock = asyncio.Lock()
        self._start_task: asyncio.Task[dict[str, Any]] | None = None
        self._check_lock = asyncio.Lock()

    # -- start and stop ------------------------------------------------------------------

    async def start(self) -> dict[str, Any]:
        """Create (or find, after a restart) every actor, then announce system.started."""
        async with self._start_lock:
            if not self._started:
                await self._start()
        return await self.status()

    async def _start(self) -> None:
        path = str(self.site.store.path.resolve())
        self.store = StoreActor.options(**actor_options(STORE_NAME), get_if_exists=True).remote(
            path, self.site.store.history_days
        )
        self.bus = BusActor.options(**actor_options(BUS_NAME), get_if_exists=True).remote()
        await asyncio.gather(self.store.ping.remote(), self.bus.ping.remote())
        per_process = self.site.runtime.routers_per_process
        for space in self.site.spaces:
            ids = [r.id for r in self.site.routers if r.space == space.id and r.enabled]
            own, rest = ids[:per_process], ids[per_process:]
            tracker = self.trackers[space.id] = SpaceActor.options(
                **actor_options(space_name(space.id)), get_if_exists=True
            ).remote(self.site_dict, space.id, self.store, self.bus, own)
            self._assign(tracker, own)
            self.groups[space.id] = []
            for start in range(0, len(rest), per_process):
                self._new_group(space.id, rest[start : start + per_process])
        await asyncio.gather(*(t.start.remote() for t in self.trackers.values()))
        await asyncio.gather(*(g.start.remote() for gs in self.groups.values() for g in gs))
        for router in self.site.routers:
            if router.enabled:
                self.routers[router.id] = router
                self.router_states.setdefault(router.id, "waiting")
                await self.store.put_router.remote(router.id, router.model_dump(mode="json"))
        if self.site.mqtt.enabled:
            self.mqtt = MqttActor.options(**actor_options(MQTT_NAME), get_if_exists=True
                                          ).remote(self.site_dict, self.bus)
            await self.mqtt.start.remote()
        # always: endpoints may also be registered through the API while it runs
        self.webhooks = WebhookActor.options(
            **actor_options(WEBHOOKS_NAME), get_if_exists=True
        ).remote(self.site_dict, self.store)
        await self.webhooks.start.remote()  # delivers from here on: system.started first
        await self.emit(
            ev.SYSTEM_STARTED,
            ev.system_started(
                _now(), __version__, routers=sorted(self.routers), spaces=sorted(self.trackers)
            ),
        )
        self._watch = asyncio.get_running_loop().create_task(self._watch_loop())
        self._started = True

    def _assign(self, host: Any, router_ids: list[str]) -> None:
        self.assigned.setdefault(host, set()).update(router_ids)

    def _new_group(self, space_id: str, router_ids: list[str]) -> Any:
        index = len(self.groups[space_id])
        group = RouterGroupActor.options(
            **actor_options(router_group_name(space_id, index)), get_if_exists=True
        ).remote(self.site_dict, router_ids, self.trackers[space_id])
        self.groups[space_id].append(group)
        self._assign(group, router_ids)
        return group

    async def stop(self) -> None:
        """Announce system.stopped and stop every router (the caller ends Ray)."""
        if self._watch is not None:
            self._watch.cancel()
        hosts = [*self.trackers.values(), *(g for gs in self.groups.values() for g in gs)]
        await asyncio.gather(*(h.stop.remote() for h in hosts), return_exceptions=True)
        with contextlib.suppress(Exception):
            await self.emit(ev.SYSTEM_STOPPED, ev.system_stopped(_now()))
            await self.store.flush.remote()
        if self.mqtt is not None:  # after system.stopped went out: then `stopped`
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.mqtt.stop.remote(), 5.0)

    async def remove_router(self, router_id: str) -> bool:
        """Stop and remove a router at runtime."""
        host = next((h for h, ids in self.assigned.items() if router_id in ids), None)
        if host is None:
            return False
        self.assigned[host].discard(router_id)
        with contextlib.suppress(Exception):
            await host.remove_router.remote(router_id)
        self.routers.pop(router_id, None)
        self.router_states.pop(router_id, None)
        self.router_status.pop(router_id, None)
        return True

    async def add_router(self, router: dict[str, Any]) -> bool:
        """Start a router at runtime (its space must exist), in its space's process while
        that has room, else in a router group with room, else in a new group."""
        config = RouterConfig.model_validate(router)
        if config.space not in self.trackers:
            raise ValueError(f"unknown space {config.space!r}")
        if config.id in self.routers:
            raise ValueError(f"router {config.id!r} already runs")
        self.site_dict = {
            **self.site_dict,
            "routers": [
                *(r for r in self.site_dict.get("routers", []) if r.get("id") != config.id),
                config.model_dump(mode="json"),
            ],
        }
        self.site = SiteConfig.model_validate(self.site_dict)
        per_process = self.site.runtime.routers_per_process
        host = next(
            (h for h in [self.trackers[config.space], *self.groups[config.space]]
             if len(self.assigned.get(h, ())) < per_process),
            None,
        )
        if host is None:
            group = self._new_group(config.space, [config.id])
            await group.start.remote()
        else:
            await host.add_router.remote(self.site_dict, config.id)
            self._assign(host, [config.id])
        self.routers[config.id] = config
        self.router_states.setdefault(config.id, "waiting")
        await self.store.put_router.remote(config.id, config.model_dump(mode="json"))
        return True

    # -- events --------------------------------------------------------------------------

    async def emit(
        self, event_type: str, data: dict[str, Any], space_id: str | None = None
    ) -> None:
        """Store an event durably, then publish it."""
        stored: list[Event] = await self.store.append_events.remote(
            [ev.make_event(event_type, data, _now(), space_id)]
        )
        await self.bus.publish.remote(EVENT_TOPIC, [event_message(e) for e in stored])

    # -- watching ------------------------------------------------------------------------

    async def _watch_loop(self) -> None:
        while True:
            await asyncio.sleep(WATCH_INTERVAL_S)
            try:
                await self._check_routers()
            except Exception:
                logger.exception("supervisor: router check failed")
            await self._keep_services_running()

    async def _keep_services_running(self) -> None:
        """The webhook dispatcher and the MQTT bridge, started again if Ray restarted
        them (``start`` is idempotent; a restarted one begins where the store says)."""
        for name, service in (("webhooks", self.webhooks), ("mqtt", self.mqtt)):
            if service is None:
                continue
            try:
                await asyncio.wait_for(service.start.remote(), PING_TIMEOUT_S)
            except Exception as exc:
                logger.warning("supervisor: %s not (re)started yet: %s", name, exc)

    async def _host_status(self, host: Any) -> list[dict[str, Any]]:
        """A host's router statuses, reconciled with what it should run: a host that
        restarted (Ray made it again from its first arguments) is started again and given
        back the routers added since; an unreachable host's routers are disconnected."""
        wanted = self.assigned.get(host, set())
        try:
            statuses: list[dict[str, Any]] = await asyncio.wait_for(
                host.routers_status.remote(), PING_TIMEOUT_S
            )
        except Exception as exc:  # dead, restarting or hung
            return [
                {"id": rid, "state": "disconnected", "last_error": f"actor unreachable: {exc}"}
                for rid in sorted(wanted)
            ]
        running = {s["id"] for s in statuses}
        with contextlib.suppress(Exception):
            if wanted - running or any(s["state"] == "waiting" for s in statuses):
                await host.start.remote()  # a restarted host starts its loops again
            for router_id in sorted(wanted - running):
                await host.add_router.remote(self.site_dict, router_id)
            for router_id in sorted(running - wanted):
                await host.remove_router.remote(router_id)
        return [s for s in statuses if s["id"] in wanted] + [
            {"id": rid, "state": "waiting"} for rid in sorted(wanted - running)
        ]

    async def _check_routers(self) -> None:
        # the watch loop and a status query may check at once: one at a time, or both
        # would record each transition and pop each unsent event
        async with self._check_lock:
            await self._check_routers_now()

    async def _check_routers_now(self) -> None:
        hosts = [h for h, ids in self.assigned.items() if ids]
        results = await asyncio.gather(*(self._host_status(h) for h in hosts))
        for status in (s for statuses in results for s in statuses):
            router_id = status["id"]
            config = self.routers.get(router_id)
            if config is None:  # removed meanwhile
                continue
            state = str(status["state"])
            self.router_status[router_id] = status
            previous = self.router_states.get(router_id, "waiting")
            if previous == "connected" and state != "connected":
                # a dead host, a restarted one ("waiting" again) or a silent source
                reason = status.get("last_error") or f"router {state}"
                self._unsent.append((
                    ev.ROUTER_DISCONNECTED,
                    ev.router_disconnected(router_id, _now(), config.space, reason=reason),
                    config.space,
                ))
            elif state == "connected" and previous != "connected":
                self._unsent.append((
                    ev.ROUTER_CONNECTED,
                    ev.router_connected(router_id, _now(), config.space, config.kind),
                    config.space,
                ))
            self.router_states[router_id] = state
        await self._flush_events()

    async def _flush_events(self) -> None:
        """Emit the router events not yet stored, oldest first.

        A transition is recorded the moment it is seen; when the store is down (restarting)
        ``emit`` raises and the events wait for the next check, in order, so none is lost
        even if the router recovers before the store does.
        """
        while self._unsent:
            event_type, data, space_id = self._unsent[0]
            await self.emit(event_type, data, space_id)
            self._unsent.popleft()


    # -- queries -------------------------------------------------------------------------

    async def routers_status(self) -> list[dict[str, Any]]:
        """The latest status of every router."""
        await self.start()  # no-op once started; rebuilds handles after a restart
        if not self.router_status:
            await self._check_routers()
        return [self.router_status.get(r, {"id": r, "state": "waiting"}) for r in self.routers]

    async def alert_rules(self) -> dict[str, Any]:
        """The alert rules in force."""
        return dict(self.alerts_live or self.site.alerts.model_dump(mode="json"))

    async def configure_alerts(self, changes: dict[str, Any]) -> dict[str, Any]:
        """Change alert rules live in every space (ValueError says what is wrong)."""
        await self.start()
        if not isinstance(changes, dict):
            raise ValueError("the rules must be a JSON object")
        try:
            rules = AlertConfig.model_validate({**await self.alert_rules(), **changes})
        except ValidationError as exc:
            raise ValueError("; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'alerts'}: {e['msg']}" for e in exc.errors()
            )) from exc
        data = rules.model_dump(mode="json")
        await asyncio.gather(*(t.configure_alerts.remote(data) for t in self.trackers.values()))
        self.alerts_live = data
        return data

    async def configure_zone(self, zone_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Change a zone live (name, polygon_m, max_occupancy, restricted): validated,
        applied by its space's tracker, kept in the store. ValueError says what is wrong."""
        await self.start()
        current = self.zones_live.get(zone_id) or next(
            (z.model_dump(mode="json") for z in self.site.zones if z.id == zone_id), None)
        if current is None:
            raise ValueError(f"unknown zone {zone_id!r}")
        if not isinstance(changes, dict):
            raise ValueError("the configuration must be a JSON object")
        fixed = {k for k in ("id", "space") if k in changes and changes[k] != current[k]}
        if fixed:
            raise ValueError(f"{', '.join(sorted(fixed))} cannot change")
        try:
            zone = ZoneConfig.model_validate({**current, **changes})
        except ValidationError as exc:
            raise ValueError("; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'zone'}: {e['msg']}" for e in exc.errors()
            )) from exc
        data = zone.model_dump(mode="json")
        await self.trackers[zone.space].configure_zone.remote(data)
        await self.store.put_zone.remote(zone.id, data)
        self.zones_live[zone.id] = data
        return data

    async def zone_occupancy(self) -> dict[str, dict[str, Any]]:
        """Occupancy of every zone, from the trackers."""
        await self.start()
        out: dict[str, dict[str, Any]] = {}
        statuses = await asyncio.gather(
            *(t.status.remote() for t in self.trackers.values()), return_exceptions=True
        )
        for status in statuses:
            if isinstance(status, dict):
                out.update(status.get("zones", {}))
        return out

    async def trackers_status(self) -> list[dict[str, Any]]:
        """Counters of every tracker (unreachable ones say so)."""
        await self.start()
        statuses = await asyncio.gather(
            *(t.status.remote() for t in self.trackers.values()), return_exceptions=True
        )
        return [
            s if isinstance(s, dict) else {"space_id": sid, "error": str(s)}
            for sid, s in zip(self.trackers, statuses, strict=True)
        ]

    def _start_in_background(self) -> None:
        """Start (after a restart of this actor, nobody else would) without waiting."""
        if self._started or (self._start_task is not None and not self._start_task.done()):
            return
        self._start_task = asyncio.get_running_loop().create_task(self.start())
        self._start_task.add_done_callback(_log_failure)

    async def health(self) -> dict[str, Any]:
        """Each component's state; healthy when store, bus and trackers answer.

        Before start() has finished it answers at once with ``starting`` (and starts, if
        nobody has): a probe during start-up neither waits for it nor disturbs it.
        """
        if not self._started:
            self._start_in_background()
            return {"healthy": False, "starting": True, "components": {}, "failing": ["starting"]}

        async def ping(handle: Any) -> str:
            try:
                await asyncio.wait_for(handle.ping.remote(), PING_TIMEOUT_S)
                return "healthy"
            except Exception as exc:
                return f"unreachable: {type(exc).__name__}"

        names = ["store", "bus", *(f"tracker:{s}" for s in self.trackers)]
        handles = [self.store, self.bus, *self.trackers.values()]
        if self.webhooks is not None:
            names.append("webhooks")
            handles.append(self.webhooks)
        states = await asyncio.gather(*(ping(h) for h in handles))
        components = dict(zip(names, states, strict=True))
        for router_id, state in self.router_states.items():
            components[f"router:{router_id}"] = state
        failing = [n for n, s in zip(names, states, strict=True) if s != "healthy"]
        if self.routers and not any(s == "connected" for s in self.router_states.values()):
            failing.append("routers: none connected")
        return {"healthy": not failing, "components": components, "failing": failing}

    async def status(self) -> dict[str, Any]:
        """Uptime, routers and spaces."""
        return {
            "uptime_seconds": time.time() - self.started_s,
            "routers": dict(self.router_states),
            "spaces": sorted(self.trackers),
        }

    async def ping(self) -> bool:
        """Liveness check."""
        return True


SupervisorActor = ray.remote(SupervisorHost)
