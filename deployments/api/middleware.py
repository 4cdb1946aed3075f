"""What every HTTP response passes through: CORS, version negotiation, deprecation and
rate-limit headers, request metrics.

One pure ASGI middleware (no per-request task or body copy). CORS is Starlette's own
``CORSMiddleware``, built on the first request from the replica's config (the app object
exists before the config does). Versions (seed §2.4): the path names the version
(``/api/v1/...``); an ``Accept: application/json; version=vN`` naming a version this
server does not serve is answered 406; a version marked deprecated in ``api.versions``
gets ``Deprecation``, ``Sunset`` and ``Link rel="deprecation"`` headers.
"""

from __future__ import annotations

import time
from collections.abc import Callable, MutableMapping
from typing import Any

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from deployments.api.auth import GatewaySecurity
from deployments.api.problems import problem
from deployments.api.state import installed_state
from invispose.security import deprecation_headers, requested_version

Observer = Callable[[str, str, int, float], None]  # method, route template, status, seconds


def _security(scope: Scope) -> GatewaySecurity | None:
    app = scope.get("app")
    found = getattr(getattr(app, "state", None), "security", None)
    if found is None and (state := installed_state()) is not None:
        found = state.security
    return found


def route_template(scope: Scope) -> str:
    """The matched route's path template (``/api/v1/pose/persons/{person_id}``), never the
    raw path: metrics labels stay few and carry no person ids."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path
    return "unmatched"


class ApiMiddleware:
    """CORS, versions, deprecation and rate-limit headers, and request metrics."""

    def __init__(self, app: ASGIApp, observe: Observer | None = None) -> None:
        self.app = app
        self.observe = observe
        self._cors: ASGIApp | None = None
        self._cors_for: GatewaySecurity | None = None  # whose config built ``_cors``

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        guard = _security(scope)
        if guard is None:  # no gateway state: nothing to apply
            await self.app(scope, receive, send)
            return
        if self._cors is None or self._cors_for is not guard:
            self._cors_for = guard
            cors = guard.site.api.cors
            self._cors = CORSMiddleware(
                self._inner,
                allow_origins=cors.allow_origins,
                allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
                allow_headers=["Authorization", "Content-Type", "Accept", "X-API-Key"],
                allow_credentials=cors.allow_credentials,
                expose_headers=["X-RateLimit-Limit", "X-RateLimit-Remaining",
                                "X-RateLimit-Reset", "RateLimit", "RateLimit-Policy",
                                "Retry-After", "Deprecation", "Sunset", "Link"],
                max_age=cors.max_age_s,
            )
        await self._cors(scope, receive, send)

    async def _inner(self, scope: Scope, receive: Receive, send: Send) -> None:
        guard = _security(scope)
        assert guard is not None
        started = time.perf_counter()
        path: str = scope.get("path", "")
        versions = guard.site.api.versions
        extra: dict[str, str] = {}
        if path.startswith("/api/"):
            headers = {k.decode("latin-1"): v.decode("latin-1")
                       for k, v in scope.get("headers", [])}
            asked = requested_version(headers.get("accept"))
            if asked is not None and asked not in versions:
                response = problem(
                    406, f"API version {asked!r} is not served; versions: "
                    f"{', '.join(sorted(versions))}", instance=path,
                )
                await response(scope, receive, send)
                self._observe(scope, 406, started)
                return
            served = path.split("/")[2] if path.count("/") >= 2 else ""
            if served in versions:
                extra = deprecation_headers(versions[served], served)
        status = 500

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                state: MutableMapping[str, Any] = scope.get("state", {})
                rate = state.get("rate")
                added = {**extra, **(rate.headers() if rate is not None else {})}
                if added:
                    raw = list(message.get("headers", []))
                    present = {k.lower() for k, _ in raw}
                    raw += [(k.lower().encode(), v.encode()) for k, v in added.items()
                            if k.lower().encode() not in present]
                    message = {**message, "headers": raw}
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            self._observe(scope, status, started)

    def _observe(self, scope: Scope, status: int, started: float) -> None:
        if self.observe is not None:
            self.observe(scope.get("method", ""), route_template(scope), status,
                         time.perf_counter() - started)
