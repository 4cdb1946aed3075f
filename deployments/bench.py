"""`invispose bench pipeline`: the whole system under load, with the bare model beside it.

Two phases on one local Ray: at the nominal rate (a window every 50 ms per router) it
measures end-to-end latency — from the arrival of a window's newest packet to the
WebSocket send — with M clients subscribed; then, with windows cut as fast as the
routers can, it measures sustained windows/s. Efficiency is that throughput divided by
the bare estimator's windows/s (floor maps and model on windows of the same routers,
no Ray) at the batch the pipeline actually formed, measured in
the same run on the same machine.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import ray

from actors.common import NAMESPACE, SUPERVISOR_NAME
from deployments.app import start_system, stop_system
from invispose.config import SiteConfig, parse_config, resolve_paths
from invispose.errors import InvisPoseError
from invispose.schemas import MAX_ROUTERS
from invispose.security import STREAM_SUBSCRIBE, SYSTEM_READ, TokenCodec

SATURATION_HOP_S = 0.005
ROUTER_START_TIMEOUT_S = 120.0  # every router actor up and producing detections
WARM_UP_S = 5.0  # then this long before measuring
BENCH_SECRET = secrets.token_urlsafe(32)  # this run's tokens only


def _cpu_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine."""
    with open("/proc/stat") as fh:
        fields = [int(v) for v in fh.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


class WebhookSink:
    """A webhook receiver on loopback, on a thread of its own, counting deliveries."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.received = 0
        self._loop = asyncio.new_event_loop()
        self._runner: Any = None

    async def _handle(self, request: Any) -> Any:
        from aiohttp import web

        await request.read()
        self.received += 1
        return web.Response(status=204)

    async def _start(self) -> None:
        from aiohttp import web

        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    def start(self) -> WebhookSink:
        import threading

        threading.Thread(target=self._loop.run_forever, daemon=True).start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=30)
        return self

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"


def bench_site(
    routers: int, port: int, checkpoint: Path, store: Path, hop_s: float,
    stream_port: int = 0, integrations: tuple[int, str] | None = None,
) -> SiteConfig:
    """``routers`` simulated Intel 5300 3x3 routers (9 links each), four to a room: the
    space model takes one to four routers (``MAX_ROUTERS``), as real rooms have. Clients
    connect to the gateway's own stream server on ``stream_port`` (0: through the proxy)."""
    n_spaces = -(-routers // MAX_ROUTERS)
    tree: dict[str, Any] = {
        "name": "bench",
        "spaces": [{"id": f"hall{s}", "size_m": [8.0, 6.0, 3.0]} for s in range(n_spaces)],
        "routers": [
            {
                "id": f"r{i}",
                "space": f"hall{i // MAX_ROUTERS}",
                "kind": "simulated",
                # simulated once and looped: the load generator stays out of the measurement
                "source": {"hardware": "intel5300", "people": 2, "seed": 1 + i // MAX_ROUTERS,
                           "loop_s": 20.0},
                # four places along the long walls of each room
                "tx_positions_m": [
                    [0.5 + 2.0 * (i % MAX_ROUTERS) + 0.03 * k, 0.2, 1.5] for k in range(3)
                ],
                "rx_positions_m": [
                    [7.5 - 2.0 * (i % MAX_ROUTERS) - 0.03 * k, 5.8, 1.2] for k in range(3)
                ],
            }
            for i in range(routers)
        ],
        "mqtt": {"enabled": False},
        "store": {"path": str(store)},
        # every bench client connects from 127.0.0.1
        "serve": {"host": "127.0.0.1", "port": port, "stream_port": stream_port,
                  "websocket": {"max_per_peer": 100_000}},
        "model": {"checkpoint": str(checkpoint), "hop_s": hop_s},
        # clients authenticate as users do; the limits are not what is measured
        "auth": {"jwt_secret": BENCH_SECRET},
        "api": {"rate_limits": {"enabled": False}},
    }
    if integrations is not None:  # MQTT to an embedded broker, every event to a webhook
        mqtt_port, webhook_url = integrations
        tree["mqtt"] = {"enabled": True, "url": f"mqtt://127.0.0.1:{mqtt_port}",
                        "topic_prefix": "bench"}
        tree["webhooks"] = {"allow_cidrs": ["127.0.0.0/8"], "endpoints": [
            {"id": "bench", "url": webhook_url, "secret": BENCH_SECRET, "events": ["*"]}]}
    return resolve_paths(parse_config(tree, env={}))


def bench_headers(site: SiteConfig) -> dict[str, str]:
    """A token for the bench's clients and status reads."""
    token, _ = TokenCodec.from_config(site.auth).issue(
        "bench", [STREAM_SUBSCRIBE, SYSTEM_READ], ttl_s=24 * 3600)
    return {"Authorization": f"Bearer {token}"}


async def _client(
    port: int, stop: asyncio.Event, received: list[float], headers: dict[str, str]
) -> None:
    url = f"http://127.0.0.1:{port}/ws/v1/stream"
    session = aiohttp.ClientSession(headers=headers)
    async with session, session.ws_connect(url) as ws:
        await ws.send_json({"type": "subscribe", "topic": "pose_updates"})
        while not stop.is_set():
            try:
                msg = await ws.receive(timeout=0.5)
            except TimeoutError:
                continue
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            data = json.loads(msg.data)
            if data.get("type") == "pose_update":
                t_end = data["metadata"].get("newest_packet_time")
                if t_end:
                    received.append((time.time() - float(t_end)) * 1e3)


async def _get(port: int, path: str, headers: dict[str, str]) -> Any:
    async with aiohttp.ClientSession(headers=headers) as session:
        async with session.get(f"http://127.0.0.1:{port}{path}") as resp:
            return await resp.json()


async def _wait_for_routers(
    port: int, routers: int, timeout_s: float, headers: dict[str, str]
) -> None:
    """Until every router has produced detections (their actors start one by one on a busy
    machine: a fixed warm-up measured half the routers at times)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = await _get(port, "/api/v1/system/routers", headers)
        if not isinstance(status, list):  # 503 while a component (re)starts
            _progress(f"waiting for the routers: {status}")
        elif sum(1 for r in status if r.get("windows_sent", 0) > 0) >= routers:
            return
        await asyncio.sleep(1.0)
    raise RuntimeError(f"not all {routers} routers produced detections within {timeout_s:.0f} s")


async def _inferred_windows() -> int:
    """Windows inference has returned detections for, over every space, now."""
    supervisor = ray.get_actor(SUPERVISOR_NAME, namespace=NAMESPACE)
    spaces = await supervisor.trackers_status.remote()
    return sum(int(s.get("windows_inferred", 0)) for s in spaces)


async def _phase(
    port: int, stream_port: int, routers: int, clients: int, duration_s: float,
    headers: dict[str, str],
) -> dict[str, Any]:
    stop = asyncio.Event()
    received: list[float] = []
    tasks = [asyncio.create_task(_client(stream_port or port, stop, received, headers))
             for _ in range(clients)]
    await _wait_for_routers(port, routers, ROUTER_START_TIMEOUT_S, headers)
    await asyncio.sleep(WARM_UP_S)  # queues and batching settle, clients connected
    before = await _get(port, "/api/v1/system/performance", headers)
    received.clear()
    busy0, total0 = _cpu_ticks()
    # the spaces' own counters, read live (the routers' status is the supervisor's
    # snapshot of up to a second ago, and later on a loaded machine), timed where read
    windows0, started = await _inferred_windows(), time.monotonic()
    await asyncio.sleep(duration_s)
    busy1, total1 = _cpu_ticks()
    windows1, elapsed_s = await _inferred_windows(), time.monotonic() - started
    after = await _get(port, "/api/v1/system/performance", headers)
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    windows = windows1 - windows0
    dropped = {k: after["drops"][k] - before["drops"].get(k, 0) for k in after["drops"]}
    values = np.array(received) if received else np.zeros(1)
    return {
        "windows_per_s": windows / elapsed_s,
        "measured_s": elapsed_s,
        "send_latency_ms": after["end_to_end_ms"],
        "receive_latency_ms": {
            "p50": float(np.percentile(values, 50)),
            "p99": float(np.percentile(values, 99)),
            "samples": len(received),
        },
        "drops": dropped,
        "cpu_percent": 100.0 * (busy1 - busy0) / max(total1 - total0, 1) * (os.cpu_count() or 1),
        "mean_batch": after["batch"]["mean"],
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _progress(message: str) -> None:
    print(f"[bench pipeline] {message}", file=sys.stderr, flush=True)


def run_pipeline_bench(
    routers: int | list[int], clients: int | list[int], duration_s: float,
    checkpoint: Path | None, integrations: bool = False,
) -> dict[str, Any]:
    """Every (routers, clients) case on one local Ray, each with both phases and the bare
    model at the batch it formed. One case: its report; several: ``{"cases": [...]}``.
    ``integrations``: the MQTT bridge (to an embedded Mosquitto) and a webhook receiving
    every event run as well."""
    from ray import serve

    from invispose.model.checkpoint import save_checkpoint
    from invispose.model.network import PoseNet

    router_counts = [routers] if isinstance(routers, int) else list(routers)
    client_counts = [clients] if isinstance(clients, int) else list(clients)
    if not router_counts or min(router_counts) < 1 or not client_counts or min(client_counts) < 0:
        raise InvisPoseError("bench pipeline needs 1 or more routers and 0 or more clients")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    workdir = Path(tempfile.mkdtemp(prefix="ipbench", dir="/tmp"))
    weights = "shipped"
    if checkpoint is None or not checkpoint.exists():
        checkpoint = workdir / "random.pt"
        save_checkpoint(checkpoint, PoseNet())
        weights = "random (no shipped checkpoint)"
    port = _free_port()
    stream_port = _free_port()
    sink = WebhookSink().start() if integrations else None
    wired = (_free_port(), sink.url) if sink is not None else None
    ray.init(
        address="local",
        include_dashboard=False,
        namespace=NAMESPACE,
        log_to_driver=False,
        _temp_dir=str(workdir / "ray"),
    )
    measured: list[tuple[int, int, dict[str, dict[str, Any]]]] = []
    failed: list[dict[str, Any]] = []
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        for n_routers in router_counts:
            for n_clients in client_counts:
                phases: dict[str, dict[str, Any]] = {}
                try:  # one case failing must not cost the others their measurements
                    for name, hop_s in (("nominal", 0.05), ("saturated", SATURATION_HOP_S)):
                        _progress(f"{name}: {n_routers} routers, {n_clients} clients, "
                                  f"{duration_s:.0f} s")
                        store = workdir / f"{n_routers}-{n_clients}-{name}.db"
                        site = bench_site(n_routers, port, checkpoint, store, hop_s,
                                          stream_port, wired)
                        supervisor = start_system(site)
                        try:
                            phases[name] = asyncio.run(
                                _phase(port, stream_port, n_routers, n_clients, duration_s,
                                       bench_headers(site))
                            )
                        finally:
                            stop_system(supervisor)
                except Exception as exc:
                    _progress(f"case {n_routers} routers, {n_clients} clients failed: {exc}")
                    failed.append({"routers": n_routers, "clients": n_clients,
                                   "error": f"{type(exc).__name__}: {exc}"[:500]})
                    continue
                measured.append((n_routers, n_clients, phases))
        serve.shutdown()
    finally:
        ray.shutdown()
        if sink is not None:
            sink.stop()
    bare_rates: dict[tuple[int, int], float] = {}
    cases = []
    for n_routers, n_clients, phases in measured:
        batch = max(1, int(round(phases["saturated"]["mean_batch"] or 1)))  # windows
        per_hop = n_routers / -(-n_routers // MAX_ROUTERS)  # a request: one room's hop
        hops = max(1, round(batch / per_hop))
        if (n_routers, hops) not in bare_rates:
            _progress(f"bare estimator: {n_routers} routers, {hops} hops per call")
            bare_rates[n_routers, hops] = _bare_rate(
                n_routers, hops, checkpoint, max(3.0, duration_s / 4)
            )
        case = _report(n_routers, n_clients, duration_s, weights, phases, batch,
                       round(bare_rates[n_routers, hops], 1))
        case["integrations"] = ({"mqtt": True, "webhook_deliveries_all_cases": sink.received}
                                if sink is not None else None)
        cases.append(case)
    if len(cases) == 1 and not failed:
        return cases[0]
    return {"cases": cases + failed}


def _bare_rate(routers: int, hops_per_batch: int, checkpoint: Path, seconds: float) -> float:
    """Router windows/s of the estimator's own prediction (floor maps and model, one torch
    thread, no Ray) on hops of the bench site's routers, ``hops_per_batch`` per call: the
    pipeline with everything but the model taken away."""
    import torch

    from invispose.ingest import router_windower
    from invispose.model.checkpoint import load_model
    from invispose.sim.live import SimulatedStream

    site = bench_site(routers, 8000, checkpoint, Path("unused.db"), 0.05)  # never served
    room_hops: dict[str, list[Any]] = {}
    for router in site.routers:
        windower = router_windower(site, router)
        scene = SimulatedStream.from_config(router, site.space(router.space)).scene
        for frame in scene.frames(router.id, 0.0, 1.0):
            windower.push(frame)
        window = windower.make_window()
        assert window is not None
        room_hops.setdefault(router.space, []).append(window)
    rooms = list(room_hops.values())
    torch.set_num_threads(1)
    model = load_model(checkpoint, torch.device("cpu")).model
    batches = [  # every room's hop in turn, hops_per_batch to a call
        [rooms[(b * hops_per_batch + i) % len(rooms)] for i in range(hops_per_batch)]
        for b in range(len(rooms))
    ]
    model.predict_hops(batches[0], batch_size=hops_per_batch)  # warm-up
    calls, windows, started = 0, 0, time.perf_counter()
    while time.perf_counter() - started < seconds or calls < 3:
        batch = batches[calls % len(batches)]
        model.predict_hops(batch, batch_size=hops_per_batch)
        windows += sum(len(hop) for hop in batch)
        calls += 1
    return windows / (time.perf_counter() - started)


def _report(
    routers: int, clients: int, duration_s: float, weights: str,
    phases: dict[str, dict[str, Any]], batch: int, bare_rate: float,
) -> dict[str, Any]:
    nominal, saturated = phases["nominal"], phases["saturated"]
    latency = nominal["send_latency_ms"]
    return {
        "routers": routers,
        "clients": clients,
        "duration_s": duration_s,
        "measured_s": round(nominal["measured_s"], 2),
        "weights": weights,
        "windows_per_s": round(saturated["windows_per_s"], 1),
        "nominal_windows_per_s": round(nominal["windows_per_s"], 1),
        "p50_ms": round(latency["p50"], 2),
        "p95_ms": round(latency["p95"], 2),
        "p99_ms": round(latency["p99"], 2),
        "client_receive_ms": nominal["receive_latency_ms"],
        "drops": nominal["drops"],
        "saturated_drops": saturated["drops"],
        "cpu_percent": round(nominal["cpu_percent"], 1),
        "batch_size": batch,
        "bare_model_windows_per_s": bare_rate,
        "efficiency": round(saturated["windows_per_s"] / bare_rate, 3) if bare_rate else None,
    }
