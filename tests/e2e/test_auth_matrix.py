"""Every route of the OpenAPI schema, and the stream, against eight kinds of credential on
the running system; then schemathesis against the schema with a valid credential.

No credential, a malformed token, an expired token, a token signed with another key,
``alg: none``, a revoked API key: 401 (the stream: close 4001); a credential without the
route's scope: 403 (4003); the route's scope and no other: served. A key revoked while a
stream is open closes it within a few seconds.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from invispose.config import AuthConfig
from invispose.security import (
    ADMIN_ALL,
    POSE_READ,
    SCOPES,
    STREAM_SUBSCRIBE,
    SYSTEM_READ,
    TokenCodec,
)
from tests.conftest import free_port
from tests.e2e.conftest import TEST_SECRET, credential_headers, make_site

pytestmark = pytest.mark.slow

OPEN_ROUTES = {("get", "/api/v1/system/health"), ("post", "/api/v1/auth/token")}
CODEC = TokenCodec.from_config(AuthConfig(jwt_secret=TEST_SECRET))


def _b64(obj: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def bad_credentials(revoked_key: str) -> dict[str, str | None]:
    """The six that must be refused as unauthenticated."""
    now = int(time.time())
    other = TokenCodec.from_config(AuthConfig(jwt_secret="another-key-" + "o" * 32))
    claims = {"sub": "mallory", "iat": now, "exp": now + 600, "scopes": list(SCOPES)}
    return {
        "none": None,
        "malformed": "not.a.jwt",
        "expired": CODEC.issue("e2e", list(SCOPES), now_s=now - 7200, ttl_s=60)[0],
        "other key": other.issue("e2e", list(SCOPES))[0],
        "alg none": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}.",
        "revoked key": revoked_key,
    }


def token(*scopes: str) -> str:
    return CODEC.issue("e2e-matrix", list(scopes), ttl_s=3600)[0]


def required_scope(operation: dict[str, Any]) -> str | None:
    (requirement,) = operation["security"]
    (scopes,) = requirement.values()
    return scopes[0] if scopes else None


def request_for(path: str, method: str, operation: dict[str, Any]) -> dict[str, Any]:
    """A request the route would accept: every path parameter and required query."""
    params: dict[str, str] = {}
    for param in operation.get("parameters", []):
        if param["in"] == "path":
            path = path.replace("{" + param["name"] + "}", "000000000000")
        elif param.get("required"):
            fmt = param.get("schema", {}).get("format")
            params[param["name"]] = "2026-01-01T00:00:00" if fmt == "date-time" else "1"
    body = None
    if method == "post" and path.endswith("/auth/keys"):
        body = {"name": "matrix", "scopes": [POSE_READ]}
    elif method == "post" and path.endswith("/webhooks"):
        # .invalid never resolves (RFC 6761): nothing is sent anywhere
        body = {"id": f"matrix{time.monotonic_ns()}", "url": "https://hooks.invalid/x"}
    elif method == "patch":
        body = {}
    return {"path": path, "params": params, "json": body}


async def call(session: aiohttp.ClientSession, base: str, method: str, req: dict[str, Any],
               credential: str | None) -> int:
    headers = {"Authorization": f"Bearer {credential}"} if credential is not None else {}
    async with session.request(method, base + req["path"], params=req["params"],
                               json=req["json"], headers=headers) as resp:
        await resp.read()
        return resp.status


async def ws_outcome(url: str, credential: str | None) -> Any:
    query = f"?token={credential}" if credential is not None else ""
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(url + query) as ws:
            msg = await ws.receive(timeout=60)
            if msg.type == aiohttp.WSMsgType.TEXT:
                return json.loads(msg.data)["type"]
            return ws.close_code


def test_every_route_and_the_stream_demand_the_right_credential(
    ray_cluster: int, random_checkpoint: Path, tmp_path: Path
) -> None:
    from deployments.app import start_system, stop_system

    stream_port = free_port()
    site = make_site(
        tmp_path, ray_cluster, random_checkpoint,
        auth={"jwt_secret": TEST_SECRET, "recheck_s": 0.5, "failures_per_minute": 100_000},
        serve={"host": "127.0.0.1", "port": ray_cluster, "stream_port": stream_port},
        api={"rate_limits": {"enabled": False}},
    )
    supervisor = start_system(site)
    base = f"http://127.0.0.1:{ray_cluster}"

    async def run() -> None:
        admin = aiohttp.ClientSession(headers=credential_headers(ADMIN_ALL))
        async with admin, aiohttp.ClientSession() as anonymous:
            async with admin.get(base + "/openapi.json") as resp:
                assert resp.status == 200
                spec = await resp.json()
            async with admin.post(base + "/api/v1/auth/keys", json={
                    "name": "to revoke", "scopes": list(SCOPES)}) as resp:
                revoked = await resp.json()
            async with admin.delete(f"{base}/api/v1/auth/keys/{revoked['id']}") as resp:
                assert resp.status == 204
            bad = bad_credentials(revoked["key"])
            secured = 0
            for path, operations in spec["paths"].items():
                for method, operation in operations.items():
                    if (method, path) in OPEN_ROUTES:
                        assert "security" not in operation, path
                        continue
                    secured += 1
                    scope = required_scope(operation)
                    req = request_for(path, method, operation)
                    for kind, credential in bad.items():
                        got = await call(anonymous, base, method, req, credential)
                        assert got == 401, (method, path, kind, got)
                    if scope is not None:
                        wrong = POSE_READ if scope != POSE_READ else STREAM_SUBSCRIBE
                        got = await call(anonymous, base, method, req, token(wrong))
                        assert got == 403, (method, path, "wrong scope", got)
                    got = await call(anonymous, base, method, req,
                                     token(scope) if scope else token(POSE_READ))
                    assert got < 500 and got not in (401, 403), (method, path, got)
            assert secured >= 14
            async with anonymous.get(base + "/metrics",
                                     headers={"Authorization": f"Bearer {token(SYSTEM_READ)}"}
                                     ) as resp:
                assert resp.status == 200
                text = await resp.text()
            assert 'endpoint="/api/v1/pose/persons/{person_id}"' in text  # the template
            assert "000000000000" not in text  # never the raw path
            assert 'invispose_router_packets_total{router="router_a"' in text
            assert "invispose_inference_latency_seconds" in text
            assert "websocket_connections_active" in text
            # the stream, through the proxy and on the gateway's own port
            for url in (f"ws://127.0.0.1:{ray_cluster}/ws/v1/stream",
                        f"ws://127.0.0.1:{stream_port}/ws/v1/stream"):
                for kind, credential in bad.items():
                    assert await ws_outcome(url, credential) == 4001, (url, kind)
                assert await ws_outcome(url, token(POSE_READ)) == 4003, url
                assert await ws_outcome(url, token(STREAM_SUBSCRIBE)) == "connection", url
            # browsers, which cannot set headers on a WebSocket: the subprotocol pair
            async with anonymous.ws_connect(
                f"ws://127.0.0.1:{stream_port}/ws/v1/stream",
                protocols=("bearer", token(STREAM_SUBSCRIBE)),
            ) as ws:
                assert ws.protocol == "bearer"
                assert (await ws.receive_json(timeout=60))["type"] == "connection"
            # the open health probe says healthy/unhealthy and component names, no more
            async with anonymous.get(base + "/api/v1/system/health") as resp:
                health = await resp.json()
            assert set(health) <= {"status", "timestamp", "components", "failing"}
            assert set(health["components"].values()) <= {"healthy", "unhealthy"}
            # revoking a key closes the streams opened with it
            async with admin.post(base + "/api/v1/auth/keys", json={
                    "name": "streamer", "scopes": [STREAM_SUBSCRIBE]}) as resp:
                key = await resp.json()
            async with anonymous.ws_connect(
                f"ws://127.0.0.1:{stream_port}/ws/v1/stream",
                headers={"Authorization": f"Bearer {key['key']}"},
            ) as ws:
                assert (await ws.receive_json(timeout=60))["type"] == "connection"
                await ws.send_json({"type": "subscribe", "topic": "pose_updates"})
                async with admin.delete(f"{base}/api/v1/auth/keys/{key['id']}") as resp:
                    assert resp.status == 204
                revoked_at = time.monotonic()
                while True:
                    msg = await ws.receive(timeout=60)
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        break
                assert ws.close_code == 4001
                assert time.monotonic() - revoked_at < 30  # auth.recheck_s 0.5 (loaded box)

    try:
        asyncio.run(run())
        schemathesis_finds_nothing(base, tmp_path)
    finally:
        stop_system(supervisor)


def schemathesis_finds_nothing(base: str, workdir: Path) -> None:
    """schemathesis generates requests from /openapi.json (admin credential): no 5xx, no
    response outside its documented schema and content type."""
    header = credential_headers(ADMIN_ALL)["Authorization"]
    st = Path(sys.executable).with_name("schemathesis")
    result = subprocess.run(
        [str(st), "run", f"{base}/openapi.json", "-H", f"Authorization: {header}",
         "--checks", "not_a_server_error,response_schema_conformance,"
         "content_type_conformance,status_code_conformance",
         "--max-examples", "15", "--generation-deterministic", "--workers", "1",
         "--request-timeout", "60", "--no-color"],
        capture_output=True, text=True, timeout=900, cwd=workdir,  # its cache goes there
        env={**os.environ, "SCHEMATHESIS_HOOKS": ""},
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
