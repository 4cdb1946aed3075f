"""/api/v1/system: status, health, routers and performance (seed §2.3)."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import time
from typing import Any

import numpy as np
from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import JSONResponse

from deployments.api.auth import authorize
from deployments.api.problems import problem_responses
from deployments.api.state import ComponentUnavailable, GatewayState, get_state
from invispose.bus import pose_frame
from invispose.security import SYSTEM_READ

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1/system", tags=["system"], responses=problem_responses())
HEALTH_TIMEOUT_S = 5.0  # a probe gets an answer in bounded time, even from a stuck actor


def _memory_mb() -> float:
    """Resident memory of this process, MB (Linux /proc; 0 elsewhere)."""
    try:
        with open(f"/proc/{os.getpid()}/statm") as fh:
            pages = int(fh.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 1e6
    except (OSError, ValueError, IndexError):
        return 0.0


async def _estimator_stats(state: GatewayState) -> dict[str, Any]:
    try:
        stats: dict[str, Any] = await state.estimator.stats.remote()
        return stats
    except Exception as exc:
        logger.warning("gateway: estimator stats failed: %s", exc)
        return {"error": f"estimator unavailable ({type(exc).__name__})"}


async def _estimator_health(state: GatewayState) -> str:
    """``healthy``, or why not: unreachable, or its last predictions failed."""
    try:
        stats = await asyncio.wait_for(state.estimator.stats.remote(), HEALTH_TIMEOUT_S)
    except Exception as exc:
        return f"unreachable: {type(exc).__name__}"
    if stats.get("consecutive_failures"):
        return f"failing: {stats['consecutive_failures']} batches in a row ({stats['last_error']})"
    return "healthy"


@router.get("/status", dependencies=[authorize(SYSTEM_READ)])
async def get_system_status(state: GatewayState = Depends(get_state)) -> dict[str, Any]:
    """Current system status and statistics (seed fields)."""
    routers = await state.supervisor.routers_status.remote()
    persons = await state.store.query.remote("persons")
    latency = state.latency_percentiles()
    estimator = await _estimator_stats(state)
    active = sum(1 for r in routers if r.get("state") == "connected")
    return {
        "status": "running" if active else "degraded",
        "uptime_seconds": round(time.time() - state.started_s, 3),
        "active_routers": active,
        "total_persons_tracked": len(persons),
        "current_fps": round(state.fps(), 2),
        "average_latency_ms": round(float(np.mean(state.e2e_ms)), 3) if state.e2e_ms else 0.0,
        "memory_usage_mb": round(_memory_mb(), 1),
        "gpu_usage_percent": estimator.get("gpu_percent"),
        "latency_ms": latency,
    }


def _plain(state: str) -> str:
    return "healthy" if state in ("healthy", "connected") else "unhealthy"


HEALTH_503 = {503: {"description": "Unhealthy or starting: the failing components named",
                    "content": {"application/json": {"schema": {"type": "object"}}}}}


@router.get("/health", responses=HEALTH_503)
async def health_check(state: GatewayState = Depends(get_state)) -> Any:
    """Healthy or not, and which components (open to load balancers: no credential, and
    nothing beyond component names and healthy/unhealthy; /system/status has details).
    503 naming the failing components when unhealthy, ``starting`` during start-up."""
    now = dt.datetime.now(dt.UTC).isoformat()
    try:
        supervisor = state.supervisor
    except ComponentUnavailable:  # not created yet: `up` is still starting
        return JSONResponse(
            status_code=503,
            content={"status": "starting", "timestamp": now, "failing": ["starting"]},
        )
    try:
        health = await asyncio.wait_for(supervisor.health.remote(), HEALTH_TIMEOUT_S)
    except Exception as exc:
        logger.warning("gateway: supervisor health failed: %s", exc)
        state.forget_actors()
        return JSONResponse(
            status_code=503,
            content={"status": "unhealthy", "timestamp": now, "failing": ["supervisor"]},
        )
    components = {name: _plain(str(s)) for name, s in health["components"].items()}
    failing = ["routers" if str(f).startswith("routers") else str(f) for f in health["failing"]]
    if not health.get("starting"):
        estimator = await _estimator_health(state)
        components["estimator"] = _plain(estimator)
        if estimator != "healthy":
            logger.warning("gateway: estimator %s", estimator)
            failing.append("estimator")
    body: dict[str, Any] = {
        "status": "starting" if health.get("starting") else "unhealthy" if failing else "healthy",
        "timestamp": now,
        "components": components,
    }
    if failing:
        body["failing"] = failing
        return JSONResponse(status_code=503, content=body)
    return body


@router.get("/routers", dependencies=[authorize(SYSTEM_READ)])
async def get_routers(state: GatewayState = Depends(get_state)) -> list[dict[str, Any]]:
    """Every router: state, packets/s, drops, bad records, last seen, motion score."""
    routers: list[dict[str, Any]] = await state.supervisor.routers_status.remote()
    return routers


@router.get("/routers/{router_id}", dependencies=[authorize(SYSTEM_READ)])
async def get_router(router_id: str, state: GatewayState = Depends(get_state)) -> dict[str, Any]:
    """One router's status."""
    for status in await state.supervisor.routers_status.remote():
        if status.get("id") == router_id:
            result: dict[str, Any] = status
            return result
    raise HTTPException(status_code=404, detail="Router not found")


@router.get("/performance", dependencies=[authorize(SYSTEM_READ)])
async def get_performance(state: GatewayState = Depends(get_state)) -> dict[str, Any]:
    """Per-stage latency percentiles, fps, batch sizes and drops."""
    routers = await state.supervisor.routers_status.remote()
    trackers = await state.supervisor.trackers_status.remote()
    bus = await state.bus.stats.remote()
    estimator = await _estimator_stats(state)
    stages: dict[str, list[float]] = {}
    for message in state.latest.values():
        for stage, ms in pose_frame(message).get("metadata", {}).get("latency_ms", {}).items():
            stages.setdefault(stage, []).append(float(ms))
    ws = state.clients.stats()
    direct = state.stream_server.stats() if state.stream_server is not None else None
    if direct is not None:  # the replica's own stream server: its clients count too
        ws = {k: v + int(direct.get(k, 0)) for k, v in ws.items()}
    return {
        "fps": round(state.fps(), 2),
        "end_to_end_ms": state.latency_percentiles(),
        "stages_ms_latest": {k: round(max(v), 3) for k, v in stages.items()},
        "router_window_latency_ms_p50": {
            r.get("id"): r.get("window_latency_ms_p50") for r in routers
        },
        "batch": {
            "mean": estimator.get("mean_batch"),
            "recent": estimator.get("recent_batch_sizes", [])[-20:],
            "device": estimator.get("device"),
        },
        "drops": {
            "router_windows": sum(int(r.get("windows_dropped", 0)) for r in routers),
            "bus_pose_frames": bus.get("dropped", 0),
            "websocket_frames": ws["frames_dropped"],
            "tracker_superseded": sum(int(t.get("superseded", 0)) for t in trackers),
        },
        "websocket_clients": ws["clients"],
        "websocket": ws,
        "stream_server": direct,
    }
