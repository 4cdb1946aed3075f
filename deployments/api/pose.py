"""/api/v1/pose: current poses, history, persons and zones (seed §2.3)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query

from deployments.api.auth import authorize
from deployments.api.problems import problem_responses
from deployments.api.state import GatewayState, get_state
from invispose.bus import pose_frame
from invispose.schemas import PoseFrame
from invispose.security import POSE_READ

MAX_SKIP = 10**12  # more frames than a store holds; SQLite's integers end at 2**63
MAX_SPAN_S = 100 * 365.25 * 86_400  # a century: anything longer is a mistake, not a query
router = APIRouter(prefix="/api/v1/pose", tags=["pose"], dependencies=[authorize(POSE_READ)],
                   responses=problem_responses())


def filter_persons(
    persons: list[dict[str, Any]],
    *,
    zone_id: str | None = None,
    min_confidence: float = 0.0,
    person_id: str | None = None,
) -> list[dict[str, Any]]:
    """Persons passing the seed's filters."""
    return [
        p
        for p in persons
        if (zone_id is None or p.get("zone_id") == zone_id)
        and float(p.get("confidence", 0.0)) >= min_confidence
        and (person_id is None or p.get("id") == person_id)
    ]


def merged_current(
    latest: dict[str, dict[str, Any]], space_id: str | None = None
) -> dict[str, Any] | None:
    """The newest frame of a space, or of all spaces merged (persons of every space)."""
    messages = [m for s, m in latest.items() if space_id is None or s == space_id]
    if not messages:
        return None
    newest = max(messages, key=lambda m: pose_frame(m)["timestamp"])
    frame = dict(pose_frame(newest))
    if len(messages) > 1:
        frame["persons"] = [p for m in messages for p in pose_frame(m)["persons"]]
        frame["metadata"] = {**frame.get("metadata", {}), "spaces": sorted(latest)}
    return frame


@router.get("/current", response_model=PoseFrame)
async def get_current_pose(
    zone_id: str | None = Query(None, description="Filter by zone ID"),
    min_confidence: float = Query(0.5, ge=0.0, le=1.0, description="Minimum confidence"),
    space_id: str | None = Query(None, description="Only this space (default: all spaces)"),
    state: GatewayState = Depends(get_state),
) -> dict[str, Any]:
    """The most recent pose estimation frame."""
    frame = merged_current(state.latest, space_id)
    if frame is None:
        latest = await state.bus.latest_frames.remote()
        frame = merged_current(latest, space_id)
    if frame is None:
        raise HTTPException(status_code=404, detail="No pose data available")
    frame["persons"] = filter_persons(
        frame["persons"], zone_id=zone_id, min_confidence=min_confidence
    )
    return frame


@router.get("/history", response_model=list[PoseFrame])
async def get_pose_history(
    start_time: dt.datetime = Query(..., description="Start time for history"),
    end_time: dt.datetime = Query(..., description="End time for history"),
    person_id: str | None = Query(None, description="Filter by person ID"),
    limit: int = Query(100, ge=1, le=1000, description="Maximum number of frames"),
    skip: int = Query(0, ge=0, le=MAX_SKIP, description="Number of frames to skip"),
    space_id: str | None = Query(None, description="Only this space"),
    state: GatewayState = Depends(get_state),
) -> list[dict[str, Any]]:
    """Stored pose frames within a time range, oldest first."""
    if end_time < start_time:
        raise HTTPException(status_code=422, detail="end_time is before start_time")
    frames: list[dict[str, Any]] = await state.store.query.remote(
        "history_dicts",
        start_time,
        end_time,
        person_id=person_id,
        limit=limit,
        skip=skip,
        space_id=space_id,
    )
    return frames


@router.get("/persons")
async def get_persons(
    active_within_s: float | None = Query(
        None, gt=0, le=MAX_SPAN_S, description="Seen within this many seconds"
    ),
    state: GatewayState = Depends(get_state),
) -> list[dict[str, Any]]:
    """Every known person, most recently seen first."""
    persons: list[dict[str, Any]] = await state.store.query.remote("persons", active_within_s)
    return persons


@router.get("/persons/{person_id}")
async def get_person_details(
    person_id: str,
    include_history: bool = Query(False, description="Include movement history"),
    state: GatewayState = Depends(get_state),
) -> dict[str, Any]:
    """Details of one person (seed shape), optionally with their trajectory."""
    person: dict[str, Any] | None = await state.store.query.remote("person", person_id)
    if person is None:
        raise HTTPException(status_code=404, detail="Person not found")
    if include_history:
        person["movement_history"] = await state.store.query.remote("trajectory", person_id)
    return person


async def _zones(state: GatewayState) -> list[dict[str, Any]]:
    occupancy: dict[str, dict[str, Any]] = await state.supervisor.zone_occupancy.remote()
    zones = []
    for zone in state.site.zones:
        occ = occupancy.get(zone.id, {})  # the tracker's: with changes made live
        zones.append(
            {
                "zone_id": zone.id,
                "name": occ.get("name") or zone.name or zone.id,
                "space_id": zone.space,
                "polygon_m": occ.get("polygon_m") or [list(p) for p in zone.polygon_m],
                "max_occupancy": occ.get("max_occupancy", zone.max_occupancy),
                "restricted": occ.get("restricted", zone.restricted),
                "current_occupancy": int(occ.get("occupancy_count", 0)),
                "persons": list(occ.get("person_ids", [])),
            }
        )
    return zones


@router.get("/zones")
async def get_zones(state: GatewayState = Depends(get_state)) -> list[dict[str, Any]]:
    """Every zone with its current occupancy."""
    return await _zones(state)


@router.get("/zones/{zone_id}")
async def get_zone(zone_id: str, state: GatewayState = Depends(get_state)) -> dict[str, Any]:
    """One zone with its current occupancy."""
    for zone in await _zones(state):
        if zone["zone_id"] == zone_id:
            return zone
    raise HTTPException(status_code=404, detail="Zone not found")
