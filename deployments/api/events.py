"""/api/v1/events: the stored events, read back by id (what a lagging WebSocket client
missed: its ``events_missed`` notice names the first id)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query

from deployments.api.auth import authorize
from deployments.api.problems import problem_responses
from deployments.api.state import GatewayState, get_state
from invispose.event_schemas import json_schemas
from invispose.schemas import Event
from invispose.security import POSE_READ

router = APIRouter(prefix="/api/v1/events", tags=["events"],
                   dependencies=[authorize(POSE_READ)], responses=problem_responses())
MAX_EVENT_ID = 2**62


@router.get("", response_model=list[Event])
async def list_events(
    after_id: int = Query(0, ge=0, le=MAX_EVENT_ID, description="Events with a larger id"),
    limit: int = Query(100, ge=1, le=1000, description="At most this many, oldest first"),
    event_type: list[str] | None = Query(None, alias="type", max_length=32,
                                         description="Only these types (repeat the parameter)"),
    space_id: str | None = Query(None, max_length=64, description="Only this space"),
    state: GatewayState = Depends(get_state),
) -> list[dict[str, Any]]:
    """Stored events after ``after_id``, oldest first; page by passing the last id seen."""
    events: list[Event] = await state.store.query.remote(
        "events_since", after_id, limit, types=event_type, space_id=space_id)
    return [e.model_dump(mode="json") for e in events]


@router.get("/schemas")
async def event_schemas() -> dict[str, dict[str, Any]]:
    """The payload (``data``) of every event type, as JSON Schema."""
    return json_schemas()
