"""/api/v1/system: status, health, routers and performance (seed §2.3)."""

from __future__ import annotations

import datetime as dt
import os
import time
from typing import Any

import numpy as np
from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import JSONResponse

from deployments.api.state import GatewayState, get_state

router = APIRouter(prefix="/api/v1/system", tags=["system"])


def _memory_mb() -> float:
    """Resident memory of this process, MB (Linux /proc; 0 elsewhere)."""
    try:
        with open(f"/proc/{os.getpid()}/statm") as fh:
            pages = int(fh.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 1e6
    except (OSError, ValueError, IndexError):
        return 0.0


def _gpu_percent() -> float | None:
    try:
        import torch

        if not torch.cuda.is_available():
            return None
        return float(torch.cuda.utilization())
    except Exception:
        return None


async def _estimator_stats(state: GatewayState) -> dict[str, Any]:
    try:
        stats: dict[str, Any] = await state.estimator.stats.remote()
        return stats
    except Exception as exc:
        return {"error": str(exc)}


@router.get("/status")
async def get_system_status(state: GatewayState = Depends(get_state)) -> dict[str, Any]:
    """Current system status and statistics (seed fields)."""
    routers = await state.supervisor.routers_status.remote()
    persons = await state.store.query.remote("persons")
    latency = state.latency_percentiles()
    active = sum(1 for r in routers if r.get("state") == "connected")
    return {
        "status": "running" if active else "degraded",
        "uptime_seconds": round(time.time() - state.started_s, 3),
        "active_routers": active,
        "total_persons_tracked": len(persons),
        "current_fps": round(state.fps(), 2),
        "average_latency_ms": round(float(np.mean(state.e2e_ms)), 3) if state.e2e_ms else 0.0,
        "memory_usage_mb": round(_memory_mb(), 1),
        "gpu_usage_percent": _gpu_percent(),
        "latency_ms": latency,
    }


@router.get("/health")
async def health_check(state: GatewayState = Depends(get_state)) -> Any:
    """Health of every component; 503 naming the failing ones when unhealthy."""
    now = dt.datetime.now(dt.UTC).isoformat()
    try:
        health = await state.supervisor.health.remote()
    except Exception as exc:
        return JSONResponse(
            status_code=503,
            content={
                "status": "unhealthy",
                "timestamp": now,
                "failing": ["supervisor"],
                "error": str(exc),
            },
        )
    body = {
        "status": "healthy" if health["healthy"] else "unhealthy",
        "timestamp": now,
        "components": health["components"],
    }
    if not health["healthy"]:
        body["failing"] = health["failing"]
        return JSONResponse(status_code=503, content=body)
    return body


@router.get("/routers")
async def get_routers(state: GatewayState = Depends(get_state)) -> list[dict[str, Any]]:
    """Every router: state, packets/s, drops, bad records, last seen, motion score."""
    routers: list[dict[str, Any]] = await state.supervisor.routers_status.remote()
    return routers


@router.get("/routers/{router_id}")
async def get_router(router_id: str, state: GatewayState = Depends(get_state)) -> dict[str, Any]:
    """One router's status."""
    for status in await state.supervisor.routers_status.remote():
        if status.get("id") == router_id:
            result: dict[str, Any] = status
            return result
    raise HTTPException(status_code=404, detail="Router not found")


@router.get("/performance")
async def get_performance(state: GatewayState = Depends(get_state)) -> dict[str, Any]:
    """Per-stage latency percentiles, fps, batch sizes and drops."""
    routers = await state.supervisor.routers_status.remote()
    trackers = await state.supervisor.trackers_status.remote()
    bus = await state.bus.stats.remote()
    estimator = await _estimator_stats(state)
    stages: dict[str, list[float]] = {}
    for message in state.latest.values():
        for stage, ms in message["frame"].get("metadata", {}).get("latency_ms", {}).items():
            stages.setdefault(stage, []).append(float(ms))
    registry = state.clients
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
            "websocket_frames": registry.dropped(),
            "tracker_superseded": sum(int(t.get("superseded", 0)) for t in trackers),
        },
        "websocket_clients": len(registry.clients),
    }
