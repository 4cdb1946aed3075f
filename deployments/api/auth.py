"""Credentials and scopes on every route, rate limits, and /api/v1/auth (seed §7).

``authorize(scope)`` is the dependency each route declares; it authenticates (JWT or API
key), checks the scope, and counts the request against its rate-limit tier. The checks
themselves live in ``invispose.security``; this module holds the replica's key ring and
limiters (``GatewaySecurity``) and the routes that manage keys and issue tokens.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Security
from fastapi.openapi.models import OAuthFlowClientCredentials, OAuthFlows
from fastapi.responses import JSONResponse, Response
from fastapi.security import OAuth2, SecurityScopes
from pydantic import BaseModel, Field

from actors.store import StoreCalls
from deployments.api.problems import problem_responses
from deployments.api.state import ComponentUnavailable, current_state
from invispose import security
from invispose.config import SiteConfig
from invispose.security import (
    LOOPBACK,
    Authenticator,
    AuthError,
    KeyRing,
    LeasedLimiter,
    Principal,
    RateDecision,
    RateLimited,
    RateLimiter,
    ScopeError,
    Take,
    TokenCodec,
)

logger = logging.getLogger(__name__)

KEYS_LOAD_TIMEOUT_S = 5.0
TOKEN_URL = "/api/v1/auth/token"
SCOPE_TEXT = {
    security.POSE_READ: "Read current poses, history, persons and zones",
    security.ANALYTICS_READ: "Read analytics",
    security.SYSTEM_READ: "Read system status, routers, performance and metrics",
    security.CONFIG_WRITE: "Change configuration",
    security.ZONE_WRITE: "Create and change zones",
    security.ADMIN_ALL: "Everything, including API keys",
    security.STREAM_SUBSCRIBE: "Open the /ws/v1/stream WebSocket",
    security.STREAM_PUBLISH: "Publish into streams",
}
# documents the scheme in the OpenAPI schema (every route lists the scopes it needs);
# the credential itself is read by ``authorize`` (Bearer token or API key)
oauth2 = OAuth2(
    flows=OAuthFlows(clientCredentials=OAuthFlowClientCredentials(
        tokenUrl=TOKEN_URL, scopes=SCOPE_TEXT)),
    scheme_name="InvisPoseAuth",
    description="`Authorization: Bearer <JWT or API key>`; tokens from the token endpoint "
    "(client id: the key id, client secret: the API key)",
    auto_error=False,
)


class GatewaySecurity:
    """One replica's credentials check: the codec, the key ring (reloaded every
    ``auth.recheck_s``), the rate limiters, and counters."""

    def __init__(self, site: SiteConfig, secret: str | None, keys: StoreCalls,
                 share: int = 1, take: Take | None = None) -> None:
        self.site = site
        self.enabled = site.auth.enabled
        self.codec = TokenCodec.from_config(site.auth, secret)
        self.ring = KeyRing()
        self.authenticator = Authenticator(self.codec, self.ring)
        self.keys = keys
        limits = site.api.rate_limits
        # with replicas, the shared count (``take``: the limits actor); this replica's
        # share of each limit only while that cannot be reached
        self.limiter = RateLimiter.from_config(limits, share=share) if limits.enabled else None
        self.shared = (LeasedLimiter(self.limiter.policies, take, replicas=share)
                       if take is not None and self.limiter is not None and share > 1
                       else None)
        self.failures = RateLimiter(  # per replica: a share of the limit each
            {"auth_failures": (site.auth.failures_per_minute, 60.0)}, share=share)
        self.counts = {"authenticated": 0, "refused_401": 0, "refused_403": 0,
                       "rate_limited": 0, "key_reload_errors": 0, "shared_limit_errors": 0}
        self._reload: asyncio.Task[None] | None = None
        self._flush: asyncio.Task[None] | None = None
        self._reload_lock = asyncio.Lock()
        self._loads = 0  # key loads completed

    # -- key ring ---------------------------------------------------------------------

    async def _load_keys(self) -> None:
        used = self.ring.take_used()
        try:
            if used:
                await self.keys.call("keys_touch", used)
            self.ring.replace(await asyncio.wait_for(self.keys.call("key_digests"),
                                                     KEYS_LOAD_TIMEOUT_S))
            self._loads += 1
        except Exception as exc:
            self.counts["key_reload_errors"] += 1
            logger.warning("gateway: API keys not reloaded (%s)", type(exc).__name__)

    async def _reload_now(self) -> None:
        """Reload the keys at once (an unknown key may have been made a moment ago, by
        another replica or `invispose keys`). Callers that arrive while a reload they did
        not see start is running wait for it instead of starting another; each address
        has only ``auth.failures_per_minute`` unknown keys to try."""
        seen = self._loads
        async with self._reload_lock:
            if self._loads == seen:
                await self._load_keys()

    async def fresh_keys(self) -> None:
        """Have the key ring no older than ``auth.recheck_s``: wait for the first load,
        reload later ones in the background."""
        loaded = self.ring.loaded_s
        if loaded is None:
            async with self._reload_lock:
                if self.ring.loaded_s is None:
                    await self._load_keys()
            if self.ring.loaded_s is None:  # keys cannot be checked: neither can revocations
                raise ComponentUnavailable("store")
            return
        if time.time() - loaded >= self.site.auth.recheck_s and (
            self._reload is None or self._reload.done()
        ):
            self._reload = asyncio.get_running_loop().create_task(self._load_keys())

    # -- requests -----------------------------------------------------------------------

    async def principal(self, credential: str | None, peer: str) -> Principal:
        """Authenticate ``credential``; failures are counted per peer (429 beyond)."""
        if not self.enabled:
            return LOOPBACK
        over = self.failures.over("auth_failures", peer)
        if over is not None:
            self.counts["rate_limited"] += 1
            raise RateLimited(over, "too many failed authentications from this address")
        await self.fresh_keys()
        try:
            try:
                principal = self.authenticator.authenticate(credential)
            except AuthError as exc:
                if exc.reason != "unknown_key":
                    raise
                await self._reload_now()
                principal = self.authenticator.authenticate(credential)  # a key made just now
        except AuthError:
            self.counts["refused_401"] += 1
            self.failures.hit("auth_failures", peer)
            raise
        self.counts["authenticated"] += 1
        if principal.key_id is not None and principal.kind == "api_key":
            self._flush_used_soon()
        return principal

    def _flush_used_soon(self) -> None:
        """Write keys' last use within ``auth.recheck_s`` even when no request follows
        (the reload that writes them otherwise waits for the next request)."""
        if self._flush is None or self._flush.done():
            self._flush = asyncio.get_running_loop().create_task(self._flush_later())

    async def _flush_later(self) -> None:
        await asyncio.sleep(self.site.auth.recheck_s)
        await self._load_keys()

    def check_scope(self, principal: Principal, scope: str | None) -> None:
        """ScopeError (403) unless ``principal`` holds ``scope``."""
        if scope is not None and not principal.allows(scope):
            self.counts["refused_403"] += 1
            raise ScopeError(scope)

    async def limit(self, principal: Principal | None, peer: str, streaming: bool = False
                    ) -> RateDecision | None:
        """Count one request; RateLimited when over its tier."""
        if self.limiter is None or principal is LOOPBACK:
            return None
        if streaming:
            policy, client = "streaming", principal.subject if principal else f"ip:{peer}"
        elif principal is None:
            policy, client = "default", f"ip:{peer}"
        else:
            policy, client = principal.tier, principal.subject
        decision = None
        if self.shared is not None:
            try:
                decision = await asyncio.wait_for(self.shared.hit(policy, client),
                                                  KEYS_LOAD_TIMEOUT_S)
            except Exception as exc:
                self.counts["shared_limit_errors"] += 1
                logger.warning("gateway: shared rate limit unavailable (%s); this "
                               "replica's share applies", type(exc).__name__)
        if decision is None:
            decision = self.limiter.hit(policy, client)
        if not decision.allowed:
            self.counts["rate_limited"] += 1
            raise RateLimited(decision, f"rate limit of the {policy!r} tier exceeded")
        return decision

    async def watch(
        self, principal: Principal, until_invalid: Callable[[AuthError], Awaitable[None]]
    ) -> None:
        """Every ``auth.recheck_s`` re-check ``principal``; call ``until_invalid`` once it
        no longer holds (a revoked key, an expired token) and return."""
        while True:
            await asyncio.sleep(self.site.auth.recheck_s)
            await self.fresh_keys()
            try:
                self.authenticator.still_valid(principal)
            except AuthError as exc:
                await until_invalid(exc)
                return

    def stats(self) -> dict[str, Any]:
        """Counters and the key ring's age."""
        loaded = self.ring.loaded_s
        return {**self.counts, "keys_age_s": None if loaded is None else time.time() - loaded}


def limits_take() -> Take:
    """``take`` through the limits actor, made by whichever replica needs it first
    (detached: it outlives that replica; stop_system removes it with the others)."""
    from actors.common import LIMITS_NAME, actor_options
    from actors.limits import LimitsActor

    handle: Any = None

    async def take(policy: str, client: str, index: int, want: int, limit: int
                   ) -> tuple[int, int]:
        nonlocal handle
        if handle is None:
            handle = LimitsActor.options(
                **{**actor_options(LIMITS_NAME), "lifetime": "detached"}, get_if_exists=True
            ).remote()
        try:
            result: tuple[int, int] = await handle.take.remote(policy, client, index, want,
                                                               limit)
        except Exception:
            handle = None  # look it up (or make it) again next time
            raise
        return result

    return take


def peer_of(request: Request) -> str:
    """The caller's address."""
    return request.client.host if request.client else "unknown"


QUERY_TOKEN_PATHS = ("/docs", "/openapi.json")  # pages a browser opens from a link


def request_credential(request: Request) -> str | None:
    """A request's credential: ``Authorization: Bearer``, ``X-API-Key``, or on the docs
    pages only, ``?token=``."""
    header = request.headers.get("authorization")
    if header is not None:
        return security.bearer(header)
    if request.url.path in QUERY_TOKEN_PATHS and "token" in request.query_params:
        return request.query_params["token"]
    return request.headers.get("x-api-key") or None


def gateway_security(request: Request) -> GatewaySecurity:
    """The replica's GatewaySecurity (set by the Gateway or the test's app)."""
    found: GatewaySecurity | None = getattr(request.app.state, "security", None)
    if found is None:
        found = current_state().security
    assert found is not None, "the gateway's security is not set up"
    return found


async def _authorize(
    security_scopes: SecurityScopes, request: Request, _: str | None = Security(oauth2)
) -> Principal:
    guard = gateway_security(request)
    peer = peer_of(request)
    principal = await guard.principal(request_credential(request), peer)
    for scope in security_scopes.scopes:
        guard.check_scope(principal, scope)
    request.state.principal = principal
    request.state.rate = await guard.limit(principal, peer)
    return principal


def authorize(scope: str | None = None) -> Any:
    """The dependency of a route that needs ``scope`` (None: any valid credential)."""
    return Security(_authorize, scopes=[scope] if scope else [])


# -- /api/v1/auth -----------------------------------------------------------------------

router = APIRouter(prefix="/api/v1/auth", tags=["auth"], responses=problem_responses())


class KeyRequest(BaseModel):
    """A new API key."""

    name: str = Field(..., min_length=1, max_length=200, description="What the key is for")
    scopes: list[str] = Field(..., min_length=1, description="Scopes the key grants")
    tier: str = Field("authenticated", description="Rate-limit tier: authenticated or premium")


class KeyInfo(BaseModel):
    """A stored key (never its secret)."""

    id: str
    name: str
    scopes: list[str]
    tier: str
    created_at: str | None
    last_used_at: str | None
    revoked_at: str | None
    active: bool


class NewKey(KeyInfo):
    """A key just created: ``key`` is shown this once."""

    key: str = Field(..., description="The API key; it is not kept and cannot be shown again")


@router.post("/keys", status_code=201, response_model=NewKey)
async def create_key(
    body: KeyRequest, request: Request,
    principal: Principal = authorize(security.ADMIN_ALL),
) -> dict[str, Any]:
    """Create an API key (shown once)."""
    guard = gateway_security(request)
    try:
        record, key = security.new_api_key(body.name, body.scopes, body.tier)
    except ValueError as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from exc
    digest = security.key_digest(key)
    await guard.keys.call("key_add", record, digest)
    guard.ring.add(record, digest)
    logger.info("API key %s (%s) created by %s", record.id, record.name, principal.subject)
    return {**record.public(), "key": key}


@router.get("/keys", response_model=list[KeyInfo])
async def list_keys(
    request: Request, _: Principal = authorize(security.ADMIN_ALL)
) -> list[dict[str, Any]]:
    """Every API key, revoked ones too (never their secrets)."""
    stored = await gateway_security(request).keys.call("key_digests")
    return [record.public() for record, _ in stored]


@router.delete("/keys/{key_id}", status_code=204, response_class=Response)
async def revoke_key(
    key_id: str, request: Request, principal: Principal = authorize(security.ADMIN_ALL)
) -> Response:
    """Revoke an API key: requests with it, and tokens issued for it, are refused from now
    on; open WebSocket sessions using it close within ``auth.recheck_s``."""
    guard = gateway_security(request)
    if not security.KEY_ID.fullmatch(key_id) or not await guard.keys.call(
        "key_revoke", key_id, time.time()
    ):
        raise HTTPException(status_code=404, detail="no active API key with this id")
    guard.ring.revoke(key_id)
    logger.info("API key %s revoked by %s", key_id, principal.subject)
    return Response(status_code=204)


def oauth_error(status: int, error: str, description: str,
                headers: dict[str, str] | None = None) -> JSONResponse:
    """An RFC 6749 §5.2 error body (the token endpoint keeps OAuth2's format)."""
    return JSONResponse(
        status_code=status,
        content={"error": error, "error_description": description},
        headers={"Cache-Control": "no-store", **(headers or {})},
    )


TOKEN_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/x-www-form-urlencoded": {"schema": {
            "type": "object",
            "required": ["grant_type"],
            "properties": {
                "grant_type": {"type": "string", "enum": ["client_credentials"]},
                "client_id": {"type": "string", "description": "The API key's id"},
                "client_secret": {"type": "string", "description": "The API key"},
                "scope": {"type": "string", "description": "Space-separated subset of the "
                          "key's scopes (default: all of them)"},
            },
        }}},
    },
}


def _basic_client(header: str | None) -> tuple[str, str] | None:
    if header is None or not header.lower().startswith("basic "):
        return None
    try:
        text = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, sep, secret = text.partition(":")
    if not sep:
        return None
    return urllib.parse.unquote_plus(client_id), urllib.parse.unquote_plus(secret)


OAUTH_ERROR = {"application/json": {"schema": {
    "type": "object", "required": ["error"],
    "properties": {"error": {"type": "string"}, "error_description": {"type": "string"}},
}}}
TOKEN_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "A bearer token", "content": {"application/json": {"schema": {
        "type": "object", "required": ["access_token", "token_type", "expires_in"],
        "properties": {"access_token": {"type": "string"}, "token_type": {"type": "string"},
                       "expires_in": {"type": "integer"}, "scope": {"type": "string"}},
    }}}},
    **{code: {"description": text, "content": OAUTH_ERROR} for code, text in (
        (400, "invalid_request, unsupported_grant_type or invalid_scope (RFC 6749 §5.2)"),
        (401, "invalid_client"),
        (429, "Too many requests or failed authentications"),
        (501, "This server holds no signing key"),
    )},
}


@router.post("/token", openapi_extra=TOKEN_BODY, responses=TOKEN_RESPONSES)
async def issue_token(request: Request) -> Any:
    """OAuth2 client credentials (RFC 6749 §4.4): an API key for a JWT of its scopes."""
    guard = gateway_security(request)
    peer = peer_of(request)
    over = guard.failures.over("auth_failures", peer)
    if over is not None:
        return oauth_error(429, "invalid_request", "too many failed authentications",
                           over.headers())
    try:
        request.state.rate = await guard.limit(None, peer)
    except RateLimited as exc:
        return oauth_error(429, "invalid_request", exc.detail, exc.decision.headers())
    if request.headers.get("content-type", "").split(";")[0].strip() != (
        "application/x-www-form-urlencoded"
    ):
        return oauth_error(400, "invalid_request",
                           "send the form as application/x-www-form-urlencoded")
    body = await request.body()
    try:
        form = urllib.parse.parse_qs(body.decode(), strict_parsing=bool(body),
                                     max_num_fields=16)
    except (UnicodeDecodeError, ValueError):
        return oauth_error(400, "invalid_request", "the body is not a valid form")
    if any(len(v) > 1 for v in form.values()):
        return oauth_error(400, "invalid_request", "a parameter was given more than once")
    fields = {k: v[0] for k, v in form.items()}
    if fields.get("grant_type") != "client_credentials":
        return oauth_error(400, "unsupported_grant_type",
                           "only grant_type=client_credentials is supported")
    basic = _basic_client(request.headers.get("authorization"))
    client_id, secret = basic or (fields.get("client_id"), fields.get("client_secret"))
    challenge = {"WWW-Authenticate": 'Basic realm="invispose"'} if basic else None
    if not secret or not guard.codec.can_issue:
        return oauth_error(400 if not secret else 501, "invalid_request" if not secret
                           else "temporarily_unavailable",
                           "client_secret is required" if not secret
                           else "this server verifies tokens but holds no signing key")
    try:
        await guard.fresh_keys()
        principal = guard.ring.verify(secret)
        if client_id is not None and principal.key_id != client_id:
            raise AuthError("unknown_key", "client_id does not match the key")
    except AuthError:
        guard.counts["refused_401"] += 1
        guard.failures.hit("auth_failures", peer)
        return oauth_error(401, "invalid_client", "unknown or revoked client", challenge)
    wanted = fields.get("scope")
    scopes = sorted(principal.scopes)
    if wanted:
        asked = wanted.split()
        if not set(asked) <= set(security.SCOPES) or not all(
            principal.allows(s) for s in asked
        ):
            return oauth_error(400, "invalid_scope", "the key does not grant these scopes")
        scopes = asked
    token, life = guard.codec.issue(principal.subject, scopes, key_id=principal.key_id,
                                    tier=principal.tier)
    return JSONResponse(
        content={"access_token": token, "token_type": "Bearer", "expires_in": int(life),
                 "scope": " ".join(scopes)},
        headers={"Cache-Control": "no-store", "Pragma": "no-cache"},
    )
