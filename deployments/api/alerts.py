"""/api/v1/alerts/rules: the alert rules every space watches, read and changed live
(``config:write``; zone rules are the zones' own, changed with the zone)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, HTTPException
from ray.exceptions import RayTaskError

from deployments.api.auth import authorize
from deployments.api.problems import problem_responses
from deployments.api.state import GatewayState, get_state
from invispose.config import AlertConfig
from invispose.security import CONFIG_WRITE

router = APIRouter(prefix="/api/v1/alerts", tags=["alerts"],
                   dependencies=[authorize(CONFIG_WRITE)], responses=problem_responses())


@router.get("/rules", response_model=AlertConfig)
async def get_rules(state: GatewayState = Depends(get_state)) -> dict[str, Any]:
    """The rules in force (the config's, with changes made here since start)."""
    rules: dict[str, Any] = await state.supervisor.alert_rules.remote()
    return rules


@router.patch("/rules", response_model=AlertConfig)
async def change_rules(
    changes: dict[str, Any] = Body(..., description="Fields of AlertConfig to change"),
    state: GatewayState = Depends(get_state),
) -> dict[str, Any]:
    """Change rules in every space at once (until the next start: the file is the base)."""
    try:
        rules: dict[str, Any] = await state.supervisor.configure_alerts.remote(changes)
    except RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, ValueError):
            raise HTTPException(status_code=422, detail=str(cause)[:500]) from exc
        raise
    return rules
