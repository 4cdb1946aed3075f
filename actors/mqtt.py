"""The MQTT bridge (aiomqtt): pose, zones, status, alerts and events to a broker, and
Home Assistant discovery.

One connection, kept: on every connect it publishes ``availability`` = ``online``
(retained; the broker's last will says ``offline``, a clean stop ``stopped``), the
discovery configs, and the retained states it holds (zone occupancy, router motion,
system status), so a broker restart loses nothing a subscriber needs. Counts start at 0
for every zone when the bridge starts: no stale occupancy survives a restart. Lost
connections are retried with exponential backoff and jitter. Pose frames come from the
result bus; ``pose/current`` and person updates are sent at most every
``mqtt.pose_interval_s`` per space, zone occupancy and motion when they change. When Home
Assistant announces itself (``homeassistant/status`` = ``online``) discovery is sent again.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import logging
import random
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.parse
import uuid
from pathlib import Path
from typing import Any

import aiomqtt
import ray

from actors.common import NAMESPACE, SUPERVISOR_NAME
from invispose import mqtt as topics
from invispose.bus import EVENT_TOPIC, POSE_TOPIC, pose_frame
from invispose.config import MqttConfig, SiteConfig, is_loopback

logger = logging.getLogger(__name__)

BACKOFF_S = (0.5, 30.0)  # first and longest wait between connection attempts
BUS_AHEAD = 8
MOTION_EVERY_S = 2.0


def client_options(config: MqttConfig, will_topic: str) -> dict[str, Any]:
    """aiomqtt.Client keyword arguments from the config's URL and credentials."""
    url = urllib.parse.urlsplit(config.url)
    secure = url.scheme in ("mqtts", "wss")
    websockets = url.scheme in ("ws", "wss")
    default_port = {"mqtt": 1883, "mqtts": 8883, "ws": 9001, "wss": 443}[url.scheme]
    options: dict[str, Any] = {
        "hostname": url.hostname,
        "port": url.port or default_port,
        "username": config.username,
        "password": config.password,
        "identifier": f"invispose-{uuid.uuid4().hex[:8]}",
        "will": aiomqtt.Will(will_topic, topics.OFFLINE, qos=1, retain=True),
        "transport": "websockets" if websockets else "tcp",
        "max_queued_outgoing_messages": 10_000,
    }
    if websockets:
        options["websocket_path"] = url.path or "/mqtt"
    if secure:
        context = ssl.create_default_context(
            cafile=str(config.ca_file) if config.ca_file else None)
        if config.cert_file:
            context.load_cert_chain(str(config.cert_file),
                                    str(config.key_file) if config.key_file else None)
        options["tls_context"] = context
    return options


class MqttBridge:
    """Publishes the system's state to the broker (see the module doc)."""

    def __init__(self, site: SiteConfig, bus: Any, supervisor: Any = None) -> None:
        self.site = site
        self.config = site.mqtt
        self.prefix = self.config.topic_prefix.rstrip("/")
        self.bus = bus
        self.supervisor = supervisor
        self.client: aiomqtt.Client | None = None
        # retained state, republished on every connect; zones start empty
        self.zones: dict[str, list[str]] = {z.id: [] for z in site.zones}
        self.zone_sent: dict[str, list[str] | None] = {z.id: None for z in site.zones}
        self.max_occupancy = {z.id: z.max_occupancy for z in site.zones}
        self.motion: dict[str, bool] = {}
        self.status: dict[str, Any] = {"status": "starting"}
        self._status_sent = -1e9  # monotonic time system/status last went out
        self.present: dict[str, int] = {}  # space -> persons in its newest frame
        self._last_pose: dict[str, float] = {}
        self.counters = {"published": 0, "connects": 0, "connection_errors": 0,
                         "oversized": 0, "bad_commands": 0}

    # -- publishing ---------------------------------------------------------------------

    async def publish(self, name: str, payload: Any, **parts: str) -> None:
        """Publish ``payload`` on ``TOPICS[name]`` with its QoS and retain flag (dropped
        while disconnected: the retained state goes out again on connect)."""
        if self.client is None:
            return
        topic, qos, retain = topics.topic(self.prefix, name, **parts)
        text = payload if isinstance(payload, str) else topics.dumps(payload)
        if len(text.encode()) > self.config.max_message_bytes:
            self.counters["oversized"] += 1
            return
        with contextlib.suppress(aiomqtt.MqttError):
            await self.client.publish(topic, text, qos=qos, retain=retain)
            self.counters["published"] += 1

    async def _announce(self) -> None:
        """What every (re)connect sends: availability, discovery, retained states."""
        await self.publish("availability", topics.ONLINE)
        await self._discovery()
        for zone_id, persons in self.zones.items():
            await self._zone(zone_id, persons, force=True)
        for router_id, present in self.motion.items():
            await self.publish("router_motion", {"router_id": router_id,
                                                 "motion_present": present}, router_id=router_id)
        await self.publish("system_status", self.status)

    async def _discovery(self) -> None:
        assert self.client is not None
        for topic, payload in topics.discovery(self.site, self.prefix,
                                               self.config.discovery_prefix):
            with contextlib.suppress(aiomqtt.MqttError):
                await self.client.publish(topic, topics.dumps(payload), qos=1, retain=True)

    async def _zone(self, zone_id: str, persons: list[str], *, force: bool = False,
                    timestamp: str | None = None) -> None:
        if not force and self.zone_sent.get(zone_id) == persons:
            return
        await self.publish("zone_occupancy", topics.zone_occupancy(
            zone_id, persons, timestamp, self.max_occupancy.get(zone_id)), zone_id=zone_id)
        self.zone_sent[zone_id] = list(persons)

    async def on_pose(self, message: dict[str, Any]) -> None:
        """One pose frame from the bus."""
        frame = pose_frame(message)
        space_id = str(message.get("space_id"))
        self.present[space_id] = len(frame.get("persons", []))
        now = time.monotonic()
        if now - self._last_pose.get(space_id, -1e9) >= self.config.pose_interval_s:
            self._last_pose[space_id] = now
            await self.publish("pose_current", topics.pose_current(frame, space_id))
            for person in frame.get("persons", []):
                await self.publish("person_update", topics.person_update(frame, person),
                                   person_id=str(person.get("id")))
        space_zones = [z.id for z in self.site.zones if z.space == space_id]
        for zone_id in space_zones:
            persons = sorted(str(p.get("id")) for p in frame.get("persons", [])
                             if p.get("zone_id") == zone_id)
            self.zones[zone_id] = persons
            await self._zone(zone_id, persons, timestamp=frame.get("timestamp"))

    async def on_event(self, event: dict[str, Any]) -> None:
        """One stored event from the bus: ``events``, and alerts by category."""
        payload = {k: v for k, v in event.items() if k != "topic"}
        await self.publish("events", payload)
        category = topics.alert_category(str(event.get("type")))
        if category is not None:
            await self.publish("system_alert", payload, category=category)

    async def refresh_status(self, force: bool = False) -> None:
        """Router motion (published when it changes) and system/status (every
        ``status_interval_s``, at once when it changes or ``force``) from the supervisor."""
        if self.supervisor is None:
            return
        routers = await self.supervisor.routers_status.remote()
        for router in routers:
            present = bool(router.get("motion_present"))
            if self.motion.get(str(router.get("id"))) != present:
                self.motion[str(router.get("id"))] = present
                await self.publish("router_motion", {"router_id": router.get("id"),
                                                     "motion_present": present},
                                   router_id=str(router.get("id")))
        connected = sum(1 for r in routers if r.get("state") == "connected")
        status = {"status": "running" if connected else "degraded",
                  "active_routers": connected, "routers": len(routers),
                  "persons": sum(self.present.values())}
        now = time.monotonic()
        changed = {k: self.status.get(k) for k in status} != status
        if force or changed or now - self._status_sent >= self.config.status_interval_s:
            self.status = {**status, "timestamp": time.time()}
            self._status_sent = now
            await self.publish("system_status", self.status)

    # -- the connection -----------------------------------------------------------------

    async def _incoming(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            payload = message.payload if isinstance(message.payload, bytes) else str(
                message.payload or "").encode()
            if message.topic.matches(f"{self.config.discovery_prefix}/status"):
                if payload.decode(errors="replace") == "online":
                    await self._discovery()  # Home Assistant (re)started
                continue
            levels = message.topic.value[len(self.prefix) + 1:].split("/")
            try:
                await self.command(levels[1:], payload)
            except Exception:  # a command must never end the connection
                self.counters["bad_commands"] += 1
                logger.exception("mqtt: command on %s failed", message.topic.value)

    async def command(self, levels: list[str], payload: bytes) -> None:
        """``command/zone/{zone}/configure``, ``command/system/{cmd}`` or
        ``command/analytics/{cmd}`` (``levels`` after ``command``); every command is
        answered on the matching ``response/...`` topic with ``success`` and, if not,
        ``error``."""
        if len(levels) == 3 and levels[0] == "zone" and levels[2] == "configure":
            reply: dict[str, Any] = await self._configure_zone(levels[1], payload)
            await self.publish("zone_configure_response", reply, zone_id=levels[1])
            return
        if len(levels) != 2 or levels[0] not in ("system", "analytics"):
            self.counters["bad_commands"] += 1
            await self.publish("command_response", {
                "success": False, "error": "commands: zone/{zone}/configure, system/{command}, "
                "analytics/{command}"}, group="unknown", command="_".join(levels) or "_")
            return
        group, name = levels
        if group == "system" and name in ("status", "republish"):
            if name == "status":
                await self.refresh_status(force=True)
            else:
                await self._announce()
            reply = {"success": True, "command": name}
        elif group == "system":
            reply = {"success": False, "error": f"unknown system command {name[:64]!r}; "
                     "commands: status, republish"}
        else:
            reply = {"success": False, "error": "analytics commands are not available yet"}
        if not reply["success"]:
            self.counters["bad_commands"] += 1
        await self.publish("command_response", reply, group=group, command=name)

    async def _configure_zone(self, zone_id: str, payload: bytes) -> dict[str, Any]:
        if len(payload) > self.config.max_message_bytes:
            return {"success": False, "zone_id": zone_id, "error": "message too large"}
        try:
            changes = json.loads(payload)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            self.counters["bad_commands"] += 1
            return {"success": False, "zone_id": zone_id, "error": f"invalid JSON: {exc}"}
        if self.supervisor is None:
            return {"success": False, "zone_id": zone_id, "error": "no system to configure"}
        try:
            zone = await self.supervisor.configure_zone.remote(zone_id, changes)
        except Exception as exc:
            self.counters["bad_commands"] += 1
            cause = getattr(exc, "cause", exc)  # the supervisor's ValueError, through Ray
            reason = str(cause) if isinstance(cause, ValueError) else type(exc).__name__
            return {"success": False, "zone_id": zone_id, "error": reason[:500]}
        self.max_occupancy[zone_id] = zone.get("max_occupancy")
        return {"success": True, "zone_id": zone_id, "zone": zone}

    async def _pump(self) -> None:
        gen = self.bus.subscribe.options(
            _generator_backpressure_num_objects=BUS_AHEAD).remote([POSE_TOPIC, EVENT_TOPIC])
        async for ref in gen:
            for message in await ref:
                if message.get("topic") == POSE_TOPIC:
                    await self.on_pose(message)
                else:
                    await self.on_event(message)

    async def _status_loop(self) -> None:
        while True:
            with contextlib.suppress(Exception):
                await self.refresh_status()
            await asyncio.sleep(MOTION_EVERY_S)

    async def run(self, stop: asyncio.Event) -> None:
        """Stay connected until ``stop``; then say ``stopped`` and leave."""
        will = topics.topic(self.prefix, "availability")[0]
        backoff = BACKOFF_S[0]
        pump = (asyncio.get_running_loop().create_task(self._pump_forever())
                if self.bus is not None else None)
        try:
            while not stop.is_set():
                try:
                    async with aiomqtt.Client(**client_options(self.config, will)) as client:
                        self.client = client
                        self.counters["connects"] += 1
                        backoff = BACKOFF_S[0]
                        await client.subscribe(f"{self.config.discovery_prefix}/status", qos=1)
                        await client.subscribe(f"{self.prefix}/command/#", qos=2)
                        await self._announce()
                        tasks = [asyncio.create_task(self._incoming(client)),
                                 asyncio.create_task(self._status_loop()),
                                 asyncio.create_task(stop.wait())]
                        try:
                            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                        finally:
                            for task in tasks:
                                task.cancel()
                        if stop.is_set():
                            await client.publish(will, topics.STOPPED, qos=1, retain=True)
                            self.client = None
                            return
                        for task in tasks:
                            if task.done() and not task.cancelled() and task.exception():
                                raise task.exception()  # type: ignore[misc]
                except aiomqtt.MqttError as exc:
                    self.counters["connection_errors"] += 1
                    logger.warning("mqtt: %s; retrying in %.1f s", exc, backoff)
                finally:
                    self.client = None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), backoff * (0.5 + random.random()))
                backoff = min(BACKOFF_S[1], backoff * 2)
        finally:
            if pump is not None:
                pump.cancel()

    async def _pump_forever(self) -> None:
        while True:
            try:
                await self._pump()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("mqtt: bus subscription lost (%s); resubscribing", exc)
                await asyncio.sleep(1.0)


def broker_answers(host: str, port: int, timeout_s: float = 1.0) -> bool:
    """Whether something accepts TCP connections at host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def embedded_broker(config: MqttConfig, state_dir: Path) -> subprocess.Popen[bytes] | None:
    """When nothing answers at a loopback ``mqtt://`` URL and ``embedded_broker`` is on,
    start Mosquitto there (loopback only, anonymous, no persistence) and return it; it
    dies with this process. None when a broker answers, the URL is not local, or
    Mosquitto is not installed (then a warning says what to do)."""
    url = urllib.parse.urlsplit(config.url)
    host, port = url.hostname or "", url.port or 1883
    if not config.embedded_broker or url.scheme != "mqtt" or not is_loopback(host):
        return None
    if broker_answers(host, port):
        return None
    binary = shutil.which("mosquitto")
    if binary is None:
        logger.warning("mqtt: no broker at %s and Mosquitto is not installed (apt install "
                       "mosquitto), or set mqtt.url, or mqtt.enabled: false", config.url)
        return None
    state_dir.mkdir(parents=True, exist_ok=True)
    conf = state_dir / "mosquitto.conf"
    conf.write_text(f"listener {port} {host}\nallow_anonymous true\npersistence false\n"
                    f"message_size_limit {config.max_message_bytes}\n")
    proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, preexec_fn=_die_with_parent)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and proc.poll() is None:
        if broker_answers(host, port, 0.2):
            logger.warning("mqtt: no broker answered at %s; started Mosquitto there "
                           "(mqtt.embedded_broker)", config.url)
            return proc
        time.sleep(0.05)
    proc.kill()
    logger.warning("mqtt: the embedded Mosquitto did not start on %s", config.url)
    return None


class MqttHost:
    """The bridge as an actor: started by the supervisor when ``mqtt.enabled``."""

    def __init__(self, site: dict[str, Any], bus: Any) -> None:
        config = SiteConfig.model_validate(site)
        supervisor = ray.get_actor(SUPERVISOR_NAME, namespace=NAMESPACE)
        self.broker = embedded_broker(config.mqtt, config.store.path.parent)
        self.bridge = MqttBridge(config, bus, supervisor)
        self.stop_event = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Connect and publish (idempotent)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self.bridge.run(self.stop_event))

    async def stop(self) -> None:
        """Publish ``stopped`` and disconnect."""
        self.stop_event.set()
        if self._task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, 5.0)
        if self.broker is not None:
            self.broker.terminate()

    async def stats(self) -> dict[str, Any]:
        """Counters and whether it is connected."""
        return {**self.bridge.counters, "connected": self.bridge.client is not None}

    async def ping(self) -> bool:
        """Liveness check."""
        return True


MqttActor = ray.remote(MqttHost)
