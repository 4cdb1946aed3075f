"""Every error as RFC 9457 ``application/problem+json``, with no internals in the body.

Bodies carry ``type`` (``about:blank``: the status says it all), ``title``, ``status``,
``detail`` and ``instance`` (the path), plus a short ``reason`` code where one helps a
client act (``expired``, ``revoked``...). Exception text, actor ids and addresses go to
the log only. The token endpoint keeps OAuth2's own error format (``auth.oauth_error``).
"""

from __future__ import annotations

import http
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from ray.exceptions import RayError
from starlette.exceptions import HTTPException

from deployments.api.state import ComponentUnavailable, current_state
from invispose.errors import InvalidArgument
from invispose.security import AuthError, RateLimited, ScopeError

logger = logging.getLogger(__name__)

PROBLEM_TYPE = "application/problem+json"
PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "title", "status"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
    },
    "additionalProperties": True,
}
ERRORS = {
    400: "The request body could not be parsed",
    401: "No valid credential (missing, malformed, expired, revoked)",
    403: "The credential lacks the route's scope",
    404: "No such resource",
    406: "An API version this server does not serve was asked for",
    409: "It exists already, or is defined in the config file",
    422: "The request is not valid",
    429: "Over the rate limit (see Retry-After)",
    503: "A component is unavailable; retry shortly",
}


def problem_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the problem bodies a route may answer with."""
    return {
        code: {"description": ERRORS[code],
               "content": {PROBLEM_TYPE: {"schema": PROBLEM_SCHEMA}}}
        for code in codes or ERRORS
    }


def problem(
    status: int,
    detail: str | None = None,
    *,
    instance: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    """An RFC 9457 problem response."""
    body: dict[str, Any] = {"type": "about:blank", "title": http.HTTPStatus(status).phrase,
                            "status": status}
    if detail:
        body["detail"] = detail
    if instance:
        body["instance"] = instance
    body.update(extra)
    return JSONResponse(status_code=status, content=body, headers=headers,
                        media_type=PROBLEM_TYPE)


def _challenge(error: str | None, description: str | None = None, **params: str) -> str:
    # RFC 6750 §3: the Bearer challenge, with the error when a credential was presented
    parts = ['realm="invispose"']
    if error:
        parts.append(f'error="{error}"')
    if description:
        parts.append('error_description="{}"'.format(description.replace('"', "'")))
    parts += [f'{k}="{v}"' for k, v in params.items()]
    return "Bearer " + ", ".join(parts)


async def on_auth_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AuthError)
    error = None if exc.reason == "missing" else "invalid_token"
    return problem(401, exc.detail, instance=request.url.path, reason=exc.reason,
                   headers={"WWW-Authenticate": _challenge(error, exc.detail)})


async def on_scope_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ScopeError)
    return problem(
        403, str(exc), instance=request.url.path, required_scope=exc.scope,
        headers={"WWW-Authenticate": _challenge("insufficient_scope", scope=exc.scope)},
    )


async def on_rate_limited(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RateLimited)
    return problem(429, exc.detail, instance=request.url.path,
                   retry_after=exc.decision.reset_s, headers=exc.decision.headers())


async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else None
    return problem(exc.status_code, detail, instance=request.url.path,
                   headers=dict(exc.headers or {}))


async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    # where and why, never the offending input (it may be large or hostile)
    errors = [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")),
               "type": str(e.get("type", ""))} for e in exc.errors()[:20]]
    return problem(422, "the request is not valid", instance=request.url.path, errors=errors)


async def on_unavailable(request: Request, exc: Exception) -> JSONResponse:
    """A call to an actor failed: 503 naming the component (the Ray text goes to the log);
    422 when the actor refused the request's values (a store query out of range)."""
    logger.warning("gateway: %s %s: %s", request.method, request.url.path, exc)
    if isinstance(getattr(exc, "cause", None), InvalidArgument):
        return problem(422, "a parameter is out of the range this query accepts",
                       instance=request.url.path)
    try:
        current_state().forget_actors()
    except RuntimeError:  # no GatewayState in this process (the app outside Serve)
        pass
    name = exc.name if isinstance(exc, ComponentUnavailable) else None
    return problem(503, "a component is unavailable; retry shortly",
                   instance=request.url.path, component=name, headers={"Retry-After": "1"})


async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("gateway: %s %s failed", request.method, request.url.path)
    return problem(500, "internal error (logged)", instance=request.url.path)


def install_problem_handlers(app: FastAPI) -> None:
    """Route every error of ``app`` through ``problem``."""
    app.add_exception_handler(AuthError, on_auth_error)
    app.add_exception_handler(ScopeError, on_scope_error)
    app.add_exception_handler(RateLimited, on_rate_limited)
    app.add_exception_handler(HTTPException, on_http_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(RayError, on_unavailable)
    app.add_exception_handler(ComponentUnavailable, on_unavailable)
    app.add_exception_handler(Exception, on_unexpected)
