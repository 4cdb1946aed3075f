"""/metrics: Prometheus text (prometheus-client) for the API and the pipeline.

The seed's API metrics (``api_requests_total{method,endpoint,status}``,
``api_request_duration_seconds``, ``api_errors_total{endpoint,error_type}``,
``websocket_connections_active``, ``websocket_messages_total{direction,type}``) are
counted as requests and messages pass, in this process's registry (the replica's own
stream server counts into it too). The ``invispose_*`` pipeline metrics are read from the
actors when scraped. Endpoint labels are route templates (``/api/v1/pose/persons/{person_id}``),
never raw paths; other labels are router, space and zone ids from the config.
"""

from __future__ import annotations

import asyncio
import http
import logging
from collections.abc import Iterator
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)

SCRAPE_TIMEOUT_S = 5.0
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

REGISTRY = CollectorRegistry()
REQUESTS = Counter("api_requests_total", "Total API requests",
                   ["method", "endpoint", "status"], registry=REGISTRY)
DURATION = Histogram("api_request_duration_seconds", "API request duration",
                     ["method", "endpoint"], registry=REGISTRY,
                     buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0))
ERRORS = Counter("api_errors_total", "Total API errors (status 400 and above)",
                 ["endpoint", "error_type"], registry=REGISTRY)
WS_ACTIVE = Gauge("websocket_connections_active", "Active WebSocket connections",
                  registry=REGISTRY)
WS_MESSAGES = Counter("websocket_messages_total", "Total WebSocket messages",
                      ["direction", "type"], registry=REGISTRY)
WS_TYPES_IN = ("subscribe", "unsubscribe", "ping", "configure")


def observe_request(method: str, endpoint: str, status: int, seconds: float) -> None:
    """Count one HTTP request (ApiMiddleware's observer)."""
    REQUESTS.labels(method, endpoint, str(status)).inc()
    DURATION.labels(method, endpoint).observe(seconds)
    if status >= 400:
        try:
            error_type = http.HTTPStatus(status).name.lower()
        except ValueError:
            error_type = str(status)
        ERRORS.labels(endpoint, error_type).inc()


def message_in(kind: Any) -> None:
    """Count a message a WebSocket client sent (unknown types as ``invalid``)."""
    WS_MESSAGES.labels("in", kind if kind in WS_TYPES_IN else "invalid").inc()


def _counter(name: str, doc: str, labels: list[str]) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, labels=labels)


def _gauge(name: str, doc: str, labels: list[str] | None = None) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=labels or [])


class PipelineCollector(Collector):
    """The pipeline's counters as read at the last scrape (``refresh``)."""

    def __init__(self) -> None:
        self.snapshot: dict[str, Any] = {}

    def collect(self) -> Iterator[Any]:
        snap = self.snapshot
        up = _gauge("invispose_component_up", "Whether the scrape could read a component",
                    ["component"])
        for component, ok in snap.get("up", {}).items():
            up.add_metric([component], 1.0 if ok else 0.0)
        yield up
        yield from self._routers(snap.get("routers") or [])
        yield from self._spaces(snap.get("spaces") or [])
        yield from self._estimator(snap.get("estimator") or {})
        gateway = snap.get("gateway") or {}
        frames = _counter("invispose_pose_frames", "Pose frames this gateway received", [])
        frames.add_metric([], float(gateway.get("frames_in", 0)))
        yield frames
        dropped = _counter("invispose_websocket_frames_dropped",
                           "Pose frames dropped for WebSocket clients that read too slowly", [])
        dropped.add_metric([], float(gateway.get("ws_frames_dropped", 0)))
        yield dropped
        bus = _counter("invispose_bus_dropped", "Messages the result bus dropped", [])
        bus.add_metric([], float((snap.get("bus") or {}).get("dropped", 0)))
        yield bus
        auth = _counter("invispose_auth_refused", "Requests refused by authentication",
                        ["status"])
        for key, status in (("refused_401", "401"), ("refused_403", "403"),
                            ("rate_limited", "429")):
            auth.add_metric([status], float((snap.get("auth") or {}).get(key, 0)))
        yield auth

    @staticmethod
    def _routers(routers: list[dict[str, Any]]) -> Iterator[Any]:
        labels = ["router", "space"]
        families = {
            "packets": _counter("invispose_router_packets", "CSI packets read", labels),
            "windows": _counter("invispose_router_windows", "Windows cut", labels),
            "drops": _counter("invispose_router_drops",
                              "Windows replaced before inference and packets dropped", labels),
            "bad_records": _counter("invispose_router_bad_records",
                                    "Malformed CSI records skipped", labels),
            "spoofed_datagrams": _counter("invispose_router_spoofed_datagrams",
                                          "UDP datagrams from senders not allowed", labels),
        }
        connected = _gauge("invispose_router_connected", "1 while packets arrive", labels)
        for router in routers:
            ids = [str(router.get("id")), str(router.get("space_id"))]
            for key, family in families.items():
                family.add_metric(ids, float(router.get(key, 0) or 0))
            connected.add_metric(ids, 1.0 if router.get("state") == "connected" else 0.0)
        yield from families.values()
        yield connected

    @staticmethod
    def _spaces(spaces: list[dict[str, Any]]) -> Iterator[Any]:
        tracks = _gauge("invispose_tracks_active", "Persons tracked now", ["space"])
        zone = _gauge("invispose_zone_persons", "Persons in a zone now", ["space", "zone"])
        counters = {
            "hops": _counter("invispose_space_hops", "Hops cut", ["space"]),
            "hops_skipped": _counter("invispose_space_hops_skipped",
                                     "Hops not cut while inference was behind", ["space"]),
            "windows_inferred": _counter("invispose_space_windows_inferred",
                                         "Router windows inference returned", ["space"]),
            "superseded": _counter("invispose_space_superseded",
                                   "Hops replaced by a newer one before tracking", ["space"]),
            "inference_errors": _counter("invispose_space_inference_errors",
                                         "Hops whose inference failed", ["space"]),
        }
        for space in spaces:
            space_id = str(space.get("space_id"))
            tracks.add_metric([space_id], float(len(space.get("persons") or [])))
            for zone_id, occ in (space.get("zones") or {}).items():
                zone.add_metric([space_id, str(zone_id)],
                                float(occ.get("occupancy_count", 0)))
            for key, family in counters.items():
                family.add_metric([space_id], float(space.get(key, 0) or 0))
        yield tracks
        yield zone
        yield from counters.values()

    @staticmethod
    def _estimator(stats: dict[str, Any]) -> Iterator[Any]:
        batches = _counter("invispose_inference_batches", "Batches the estimator ran", [])
        batches.add_metric([], float(stats.get("batches", 0)))
        windows = _counter("invispose_inference_windows", "Router windows inferred", [])
        windows.add_metric([], float(stats.get("windows", 0)))
        failures = _counter("invispose_inference_failures", "Batches that failed", [])
        failures.add_metric([], float(stats.get("failures", 0)))
        size = _gauge("invispose_inference_batch_size",
                      "Router windows per batch, over the last 100 batches", ["quantile"])
        latency = _gauge("invispose_inference_latency_seconds",
                         "Time to infer one batch, over the last 100 batches", ["quantile"])
        for family, values, scale in (
            (size, stats.get("recent_batch_sizes") or [], 1.0),
            (latency, stats.get("recent_batch_ms") or [], 1e-3),
        ):
            if values:
                for q in (0.5, 0.9, 0.99):
                    family.add_metric([str(q)], float(np.quantile(values, q)) * scale)
        yield from (batches, windows, failures, size, latency)


PIPELINE = PipelineCollector()
REGISTRY.register(PIPELINE)


async def _read(name: str, up: dict[str, bool], call: Any) -> Any:
    try:
        return await asyncio.wait_for(call(), SCRAPE_TIMEOUT_S)
    except Exception as exc:
        logger.warning("metrics: %s unreadable (%s)", name, type(exc).__name__)
        up[name] = False
        return None


async def scrape(state: Any) -> bytes:
    """Read the pipeline's counters from the actors and render every metric."""
    up: dict[str, bool] = {"supervisor": True, "bus": True, "estimator": True}
    routers, spaces, bus, estimator = await asyncio.gather(
        _read("supervisor", up, lambda: state.supervisor.routers_status.remote()),
        _read("supervisor", up, lambda: state.supervisor.trackers_status.remote()),
        _read("bus", up, lambda: state.bus.stats.remote()),
        _read("estimator", up, lambda: state.estimator.stats.remote()),
    )
    ws = state.clients.stats() if state.clients is not None else {}
    direct = state.stream_server.stats() if state.stream_server is not None else {}
    PIPELINE.snapshot = {
        "up": up, "routers": routers, "spaces": [s for s in spaces or [] if "space_id" in s],
        "bus": bus, "estimator": estimator,
        "gateway": {"frames_in": state.frames_in,
                    "ws_frames_dropped": int(ws.get("frames_dropped", 0))
                    + int(direct.get("frames_dropped", 0) or 0)},
        "auth": state.security.stats() if state.security is not None else {},
    }
    return generate_latest(REGISTRY)
