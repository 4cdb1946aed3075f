"""The MQTT bridge against a real Mosquitto: topics, QoS and retain flags as a subscriber
sees them, Home Assistant discovery, availability, and a broker restart mid-stream."""

from __future__ import annotations

import asyncio
import getpass
import json
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiomqtt
import pytest

from actors.mqtt import MqttBridge
from invispose.config import SiteConfig, parse_config
from tests.conftest import free_port

BROKER = "127.0.0.1"


def site(port: int = 1883) -> SiteConfig:
    prefix = f"ivtest_{uuid.uuid4().hex[:8]}"  # the shared broker: a prefix of our own
    return parse_config({
        "name": "Flat",
        "spaces": [{"id": "lab", "size_m": [6, 5, 3]}],
        "zones": [{"id": "sofa", "space": "lab", "polygon_m": [[0, 0], [2, 0], [2, 2], [0, 2]],
                   "max_occupancy": 2}],
        "routers": [{"id": "r1", "space": "lab", "kind": "simulated",
                     "tx_positions_m": [[0.1, 1, 1]], "rx_positions_m": [[5.9, 4, 1]]}],
        "mqtt": {"url": f"mqtt://{BROKER}:{port}", "topic_prefix": prefix,
                 "discovery_prefix": f"{prefix}_ha", "pose_interval_s": 0.05},
    }, env={})


def pose(persons: list[tuple[str, str | None]], frame_id: int = 1) -> dict[str, Any]:
    people = [{"id": pid, "confidence": 0.9, "zone_id": zone, "activity": "standing",
               "keypoints": [{"id": i, "name": f"k{i}", "x": 0.5, "y": 0.5, "confidence": 0.9,
                              "position_m": [1.0, 1.0, 0.1 * i]} for i in range(17)]}
              for pid, zone in persons]
    frame = {"timestamp": "2026-12-04T12:00:00+00:00", "frame_id": frame_id,
             "persons": people, "processing_time_ms": 1.0, "metadata": {}}
    text = json.dumps({"type": "pose_update", "topic": "pose_updates", "space_id": "lab",
                       **frame})
    return {"topic": "pose", "space_id": "lab", "t_end_s": 0.0, "text": text}


class Subscriber:
    """Records every message under a filter: topic → (payload, qos, retain)."""

    def __init__(self, port: int = 1883) -> None:
        self.port = port
        self.seen: dict[str, list[tuple[Any, int, bool]]] = {}

    @asynccontextmanager
    async def watching(self, *filters: str) -> AsyncIterator[Subscriber]:
        async with aiomqtt.Client(BROKER, self.port) as client:
            for f in filters:
                await client.subscribe(f, qos=2)

            async def read() -> None:
                async for m in client.messages:
                    raw = bytes(m.payload or b"").decode()
                    try:
                        value: Any = json.loads(raw)
                    except json.JSONDecodeError:
                        value = raw
                    self.seen.setdefault(m.topic.value, []).append((value, m.qos, m.retain))

            task = asyncio.create_task(read())
            try:
                yield self
            finally:
                task.cancel()

    async def wait_for(self, topic: str, check: Any = None, timeout_s: float = 30) -> Any:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for value, qos, retain in self.seen.get(topic, []):
                if check is None or check(value):
                    return value, qos, retain
            await asyncio.sleep(0.02)
        raise AssertionError(f"nothing on {topic}: {sorted(self.seen)}")


async def retained(port: int, topic: str) -> tuple[Any, int, bool]:
    """What a new subscriber gets of a retained topic."""
    late = Subscriber(port)
    async with late.watching(topic):
        return await late.wait_for(topic)


def test_the_seed_topics_with_their_qos_and_retain_flags() -> None:
    async def run() -> None:
        config = site()
        prefix = config.mqtt.topic_prefix
        bridge = MqttBridge(config, bus=None)
        stop = asyncio.Event()
        sub = Subscriber()
        async with sub.watching(f"{prefix}/#", f"{prefix}_ha/#"):
            task = asyncio.create_task(bridge.run(stop))
            assert (await sub.wait_for(f"{prefix}/availability"))[0] == "online"
            empty, _, _ = await sub.wait_for(f"{prefix}/pose/zone/sofa/occupancy")
            assert empty["occupancy_count"] == 0  # counts start at 0
            await bridge.on_pose(pose([("person_1", "sofa"), ("person_2", None)]))
            current, qos, _ = await sub.wait_for(f"{prefix}/pose/current")
            assert qos == 0 and current["person_count"] == 2
            update, qos, _ = await sub.wait_for(f"{prefix}/pose/person/person_1/update")
            assert qos == 1 and len(update["keypoints"]) == 17
            occupancy, qos, _ = await sub.wait_for(
                f"{prefix}/pose/zone/sofa/occupancy", lambda v: v["occupancy_count"] == 1)
            assert qos == 1 and occupancy["person_ids"] == ["person_1"]
            fall = {"topic": "events", "id": 7, "type": "person.fall_detected",
                    "timestamp": "2026-12-04T12:00:01+00:00", "space_id": "lab",
                    "data": {"person_id": "person_1"}}
            await bridge.on_event(fall)
            event, qos, _ = await sub.wait_for(f"{prefix}/events")
            assert qos == 1 and event["type"] == "person.fall_detected"
            alert, qos, _ = await sub.wait_for(f"{prefix}/system/alerts/fall")
            assert qos == 2 and alert["id"] == 7
            config_topic = f"{prefix}_ha/binary_sensor/invispose_flat_sofa_occupied/config"
            discovery, _, _ = await sub.wait_for(config_topic)
            assert discovery["state_topic"] == f"{prefix}/pose/zone/sofa/occupancy"
            assert discovery["default_entity_id"] == "binary_sensor.invispose_sofa_occupied"
            assert discovery["object_id"] == "invispose_sofa_occupied"
            assert discovery["origin"]["name"] == "InvisPose"
            assert discovery["device"]["via_device"] == "invispose_flat"
            await sub.wait_for(f"{prefix}_ha/sensor/invispose_flat_sofa_persons/config")
            await sub.wait_for(f"{prefix}_ha/event/invispose_flat_fall/config")
            await sub.wait_for(f"{prefix}_ha/binary_sensor/invispose_flat_r1_motion/config")
            # retained ones, as a subscriber arriving later sees them
            for topic in ("pose/current", "pose/zone/sofa/occupancy", "availability"):
                assert (await retained(1883, f"{prefix}/{topic}"))[2] is True, topic
            sub.seen.clear()
            # Home Assistant restarts: discovery again
            async with aiomqtt.Client(BROKER, 1883) as ha:
                await ha.publish(f"{prefix}_ha/status", "online", qos=1)
            await sub.wait_for(config_topic)
            stop.set()
            await asyncio.wait_for(task, 30)
            assert (await retained(1883, f"{prefix}/availability"))[0] == "stopped"
        await clear_retained(prefix)

    asyncio.run(run())


async def clear_retained(prefix: str, port: int = 1883) -> None:
    """Leave the shared broker as it was: empty every retained topic under the prefix."""
    found: set[str] = set()
    async with aiomqtt.Client(BROKER, port) as client:
        for f in (f"{prefix}/#", f"{prefix}_ha/#"):
            await client.subscribe(f)

        async def read() -> None:
            async for m in client.messages:
                if m.retain:
                    found.add(m.topic.value)

        task = asyncio.create_task(read())
        await asyncio.sleep(0.5)  # retained messages arrive at once on subscribe
        task.cancel()
        for topic in found:
            await client.publish(topic, b"", retain=True)


@pytest.mark.skipif(shutil.which("mosquitto") is None, reason="needs the mosquitto binary")
def test_a_broker_restart_mid_stream_loses_no_retained_state() -> None:
    port = free_port()

    def broker() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(["mosquitto", "-p", str(port)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((BROKER, port), timeout=1):
                    return proc
            except OSError:
                time.sleep(0.05)
        raise AssertionError("mosquitto did not start")

    async def run() -> None:
        config = site(port)
        prefix = config.mqtt.topic_prefix
        bridge = MqttBridge(config, bus=None)
        stop = asyncio.Event()
        proc = broker()
        task = asyncio.create_task(bridge.run(stop))
        try:
            deadline = time.monotonic() + 30
            while bridge.client is None:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.02)
            await bridge.on_pose(pose([("person_1", "sofa"), ("person_2", "sofa")]))
            count = (await retained(port, f"{prefix}/pose/zone/sofa/occupancy"))[0]
            assert count["occupancy_count"] == 2
            proc.terminate()  # the broker goes, and its retained messages with it
            proc.wait(timeout=30)
            proc = broker()
            while bridge.counters["connects"] < 2:
                assert time.monotonic() < deadline + 60, "the bridge did not reconnect"
                await asyncio.sleep(0.05)
            value, _, was_retained = await retained(port, f"{prefix}/pose/zone/sofa/occupancy")
            assert value["occupancy_count"] == 2 and was_retained  # republished on connect
            assert (await retained(port, f"{prefix}/availability"))[0] == "online"
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)
            proc.terminate()
            proc.wait(timeout=30)

    asyncio.run(run())


def test_commands_are_answered_and_malformed_ones_change_nothing() -> None:
    async def run() -> None:
        config = site()
        prefix = config.mqtt.topic_prefix
        bridge = MqttBridge(config, bus=None)  # no system behind it: zones cannot change
        stop = asyncio.Event()
        sub = Subscriber()
        async with sub.watching(f"{prefix}/response/#"):
            task = asyncio.create_task(bridge.run(stop))
            deadline = time.monotonic() + 30
            while bridge.client is None:
                assert time.monotonic() < deadline, "the bridge did not connect"
                await asyncio.sleep(0.02)
            async with aiomqtt.Client(BROKER, 1883) as cmd:
                await cmd.publish(f"{prefix}/command/zone/sofa/configure", b"{not json", qos=2)
                await cmd.publish(f"{prefix}/command/analytics/report", b"{}", qos=2)
                await cmd.publish(f"{prefix}/command/system/republish", b"", qos=2)
                await cmd.publish(f"{prefix}/command/system/reboot", b"", qos=2)
            bad, _, _ = await sub.wait_for(f"{prefix}/response/zone/sofa/configure")
            assert bad["success"] is False and "invalid JSON" in bad["error"]
            analytics, _, _ = await sub.wait_for(f"{prefix}/response/analytics/report")
            assert analytics == {"success": False,
                                 "error": "analytics commands are not available yet"}
            ok, _, _ = await sub.wait_for(f"{prefix}/response/system/republish")
            assert ok["success"] is True
            unknown, _, _ = await sub.wait_for(f"{prefix}/response/system/reboot")
            assert unknown["success"] is False and "republish" in unknown["error"]
            assert bridge.client is not None  # still connected
            stop.set()
            await asyncio.wait_for(task, 30)
        await clear_retained(prefix)

    asyncio.run(run())


@pytest.mark.skipif(shutil.which("mosquitto") is None, reason="needs the mosquitto binary")
def test_an_embedded_broker_starts_where_none_answers(tmp_path: Any) -> None:
    from actors.mqtt import broker_answers, embedded_broker

    port = free_port()
    config = site(port).mqtt
    assert not broker_answers(BROKER, port)
    proc = embedded_broker(config, tmp_path)
    assert proc is not None
    try:
        assert broker_answers(BROKER, port)
        assert embedded_broker(config, tmp_path) is None  # one answers now

        async def round_trip() -> None:
            sub = Subscriber(port)
            async with sub.watching("t/#"):
                async with aiomqtt.Client(BROKER, port) as client:
                    await client.publish("t/x", "1", qos=1)
                await sub.wait_for("t/x")

        asyncio.run(round_trip())
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    off = config.model_copy(update={"embedded_broker": False})
    assert embedded_broker(off, tmp_path) is None
    remote = config.model_copy(update={"url": "mqtt://broker.example:1883"})
    assert embedded_broker(remote, tmp_path) is None


def _certificates(tmp_path: Any) -> tuple[Any, Any, Any]:
    """A CA, and a server certificate for 127.0.0.1 signed by it (PEM files)."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)

    def build(subject: str, key: Any, issuer: Any, issuer_key: Any, ca: bool) -> Any:
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
                   .issuer_name(issuer).public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - dt.timedelta(minutes=5))
                   .not_valid_after(now + dt.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if not ca:
            builder = builder.add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address(BROKER))]), critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    ca = build("test CA", ca_key, ca_name, ca_key, True)
    server = build(BROKER, key, ca_name, ca_key, False)
    files = tmp_path / "ca.pem", tmp_path / "server.pem", tmp_path / "server.key"
    files[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files[1].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    files[2].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return files


@pytest.mark.skipif(shutil.which("mosquitto") is None, reason="needs the mosquitto binary")
def test_the_bridge_connects_over_websockets_and_tls(tmp_path: Any) -> None:
    plain, ws_port, tls_port = free_port(), free_port(), free_port()
    ca, cert, key = _certificates(tmp_path)
    conf = tmp_path / "broker.conf"
    conf.write_text(
        # run as root (as CI does), Mosquitto would drop to its own user, who cannot read
        # the private test directory
        f"user {getpass.getuser()}\nper_listener_settings false\nallow_anonymous true\n"
        f"listener {plain} {BROKER}\n"
        f"listener {ws_port} {BROKER}\nprotocol websockets\n"
        f"listener {tls_port} {BROKER}\ncafile {ca}\ncertfile {cert}\nkeyfile {key}\n")
    log = tmp_path / "broker.log"
    proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=log.open("wb"),
                            stderr=subprocess.STDOUT)

    async def connects(url: str, **extra: Any) -> None:
        config = site(plain)
        mqtt = config.mqtt.model_copy(update={"url": url, **extra})
        config = config.model_copy(update={"mqtt": mqtt})
        prefix = config.mqtt.topic_prefix
        sub = Subscriber(plain)  # reads over plain TCP what came in over WS or TLS
        async with sub.watching(f"{prefix}/#"):
            bridge = MqttBridge(config, bus=None)
            stop = asyncio.Event()
            task = asyncio.create_task(bridge.run(stop))
            try:
                assert (await sub.wait_for(f"{prefix}/availability"))[0] == "online", url
            finally:
                stop.set()
                await asyncio.wait_for(task, 30)

    try:
        deadline = time.monotonic() + 30
        while not all(_listening(p) for p in (plain, ws_port, tls_port)):
            assert time.monotonic() < deadline and proc.poll() is None, log.read_text()
            time.sleep(0.05)
        asyncio.run(connects(f"ws://{BROKER}:{ws_port}/mqtt"))
        asyncio.run(connects(f"mqtts://{BROKER}:{tls_port}", ca_file=ca))
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _listening(port: int) -> bool:
    try:
        with socket.create_connection((BROKER, port), timeout=0.5):
            return True
    except OSError:
        return False
