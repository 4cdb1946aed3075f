"""/api/v1/webhooks: register, list, update and delete endpoints; their delivery log,
redelivery, and a test ping (seed §5). All need ``config:write``.

Endpoints from the config file are listed too (``source: config``) but change only with
the file; those registered here are kept in the store and picked up by the dispatcher
within half a second. A secret is shown once, when it is made (given or generated).
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
import time
from typing import Any

import aiohttp
from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import Response
from pydantic import BaseModel, Field, ValidationError

from actors.webhooks import CheckedResolver, attempt_delivery, literal_refused
from deployments.api.auth import authorize
from deployments.api.problems import problem_responses
from deployments.api.state import GatewayState, get_state
from invispose.config import RetryPolicy, WebhookConfig
from invispose.schemas import Event
from invispose.security import CONFIG_WRITE

router = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"],
                   dependencies=[authorize(CONFIG_WRITE)], responses=problem_responses())
ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"


class WebhookIn(BaseModel):
    """A webhook endpoint (seed ``WebhookConfig``); ``secret`` is generated if omitted."""

    id: str = Field(..., pattern=ID_PATTERN, description="Unique id")
    url: str = Field(..., max_length=2000, description="http(s) URL receiving the events")
    events: list[str] = Field(["*"], max_length=64, description="Event names or '*'")
    secret: str | None = Field(None, min_length=16, max_length=256,
                               description="Signing secret (default: generated)")
    headers: dict[str, str] = Field(default_factory=dict, description="Extra headers")
    retry_policy: RetryPolicy = Field(default_factory=RetryPolicy, description="Retries")
    timeout_s: float = Field(10.0, gt=0, le=120, description="Time allowed per attempt")
    active: bool = Field(True, description="Deliver to it")


class WebhookPatch(BaseModel):
    """Fields to change (the rest stay)."""

    url: str | None = Field(None, max_length=2000)
    events: list[str] | None = Field(None, max_length=64)
    secret: str | None = Field(None, min_length=16, max_length=256)
    headers: dict[str, str] | None = None
    retry_policy: RetryPolicy | None = None
    timeout_s: float | None = Field(None, gt=0, le=120)
    active: bool | None = None


def _public(webhook: WebhookConfig, source: str) -> dict[str, Any]:
    """What the API shows of an endpoint: never its secret."""
    data = webhook.model_dump(mode="json", exclude={"secret", "enabled"})
    return {**data, "active": webhook.enabled, "source": source}


def _config(data: dict[str, Any], allow_cidrs: list[str]) -> WebhookConfig:
    """The stored form, validated; 422 naming what is wrong."""
    try:
        webhook = WebhookConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise HTTPException(status_code=422, detail=problems[:500]) from exc
    refused = literal_refused(webhook.url, allow_cidrs)
    if refused is not None:
        raise HTTPException(status_code=422, detail=refused)
    return webhook


async def _find(state: GatewayState, webhook_id: str) -> tuple[WebhookConfig, str]:
    """The endpoint and where it comes from (``config`` or ``api``); 404 if none."""
    for configured in state.site.webhooks.endpoints:
        if configured.id == webhook_id:
            return configured, "config"
    stored = None
    if re.fullmatch(ID_PATTERN, webhook_id):  # others cannot have been stored
        stored = await state.store.query.remote("webhook", webhook_id)
    if stored is None:
        raise HTTPException(status_code=404, detail="no such webhook")
    return WebhookConfig.model_validate(stored), "api"


@router.get("")
async def list_webhooks(state: GatewayState = Depends(get_state)) -> list[dict[str, Any]]:
    """Every endpoint, from the config and registered here."""
    out = [_public(w, "config") for w in state.site.webhooks.endpoints]
    stored: dict[str, dict[str, Any]] = await state.store.query.remote("webhooks")
    out += [_public(WebhookConfig.model_validate(d), "api") for d in stored.values()]
    return out


@router.post("", status_code=201)
async def create_webhook(body: WebhookIn, state: GatewayState = Depends(get_state)
                         ) -> dict[str, Any]:
    """Register an endpoint; the response shows its secret, this once."""
    if any(w.id == body.id for w in state.site.webhooks.endpoints) or (
        await state.store.query.remote("webhook", body.id)
    ) is not None:
        raise HTTPException(status_code=409, detail=f"webhook {body.id!r} exists")
    data = body.model_dump(mode="json", exclude={"active"})
    data["enabled"] = body.active
    data["secret"] = body.secret or secrets.token_urlsafe(32)
    webhook = _config(data, state.site.webhooks.allow_cidrs)
    await state.store.put_webhook.remote(webhook.id, webhook.model_dump(mode="json"))
    return {**_public(webhook, "api"), "secret": webhook.secret}


@router.get("/{webhook_id}")
async def get_webhook(webhook_id: str, state: GatewayState = Depends(get_state)
                      ) -> dict[str, Any]:
    """One endpoint (never its secret)."""
    webhook, source = await _find(state, webhook_id)
    return _public(webhook, source)


@router.patch("/{webhook_id}")
async def update_webhook(webhook_id: str, body: WebhookPatch,
                         state: GatewayState = Depends(get_state)) -> dict[str, Any]:
    """Change a registered endpoint (those of the config file change with the file)."""
    webhook, source = await _find(state, webhook_id)
    if source == "config":
        raise HTTPException(status_code=409, detail="this webhook is defined in the config file")
    changes = body.model_dump(mode="json", exclude_unset=True, exclude={"active"})
    data = {**webhook.model_dump(mode="json"), **changes}
    if body.active is not None:
        data["enabled"] = body.active
    updated = _config(data, state.site.webhooks.allow_cidrs)
    await state.store.put_webhook.remote(webhook_id, updated.model_dump(mode="json"))
    return _public(updated, "api")


@router.delete("/{webhook_id}", status_code=204, response_class=Response)
async def delete_webhook(webhook_id: str, state: GatewayState = Depends(get_state)) -> Response:
    """Remove a registered endpoint (its pending deliveries stay in the log, unsent)."""
    _, source = await _find(state, webhook_id)
    if source == "config":
        raise HTTPException(status_code=409, detail="this webhook is defined in the config file")
    await state.store.delete_webhook.remote(webhook_id)
    return Response(status_code=204)


@router.get("/{webhook_id}/deliveries")
async def list_deliveries(
    webhook_id: str,
    limit: int = Query(100, ge=1, le=1000, description="Entries, newest first"),
    before_id: int | None = Query(None, ge=1, le=2**62, description="Page: older than this"),
    state: GatewayState = Depends(get_state),
) -> list[dict[str, Any]]:
    """The delivery log: each attempt, its status, error and latency."""
    await _find(state, webhook_id)
    log: list[dict[str, Any]] = await state.store.query.remote(
        "deliveries", webhook_id, limit, before_id)
    return log


@router.post("/{webhook_id}/deliveries/{delivery_id}/redeliver", status_code=202)
async def redeliver(webhook_id: str, delivery_id: int, state: GatewayState = Depends(get_state)
                    ) -> dict[str, Any]:
    """Deliver a logged event again (it goes out in its place in the endpoint's order)."""
    await _find(state, webhook_id)
    if not 1 <= delivery_id <= 2**62:
        raise HTTPException(status_code=404, detail="no such delivery")
    log = await state.store.query.remote("deliveries", webhook_id, 1, delivery_id + 1)
    if not log or log[0]["id"] != delivery_id:
        raise HTTPException(status_code=404, detail="no such delivery of this webhook")
    outbox_id = await state.store.outbox_redeliver.remote(delivery_id)
    return {"delivery_id": delivery_id, "outbox_id": outbox_id, "status": "queued"}


@router.post("/{webhook_id}/ping")
async def ping(webhook_id: str, state: GatewayState = Depends(get_state)) -> dict[str, Any]:
    """Send one signed ``webhook.ping`` now and say how it went (not stored, not retried)."""
    webhook, _ = await _find(state, webhook_id)
    event = Event(type="webhook.ping", timestamp=dt.datetime.now(dt.UTC),
                  data={"webhook_id": webhook.id})
    allow = state.site.webhooks.allow_cidrs
    connector = aiohttp.TCPConnector(resolver=CheckedResolver(allow))
    async with aiohttp.ClientSession(connector=connector) as session:
        outcome = await attempt_delivery(session, webhook, event, int(time.time()), allow)
    return {"delivered": outcome.delivered, "status_code": outcome.status,
            "error": outcome.error, "duration_ms": round(outcome.duration_ms, 3)}
