"""The gateway's security over real HTTP on loopback, without Ray: the token endpoint, key
management, problem+json, versions, CORS, rate limits, and refused WebSocket upgrades.

The gateway app runs in uvicorn with its security backed by a real store file (the keys
live where the system keeps them); routes that need the running system are walked by the
end-to-end matrix in tests/e2e/test_auth_matrix.py.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.parse
from typing import Any

import aiohttp

from invispose.security import ADMIN_ALL, POSE_READ, STREAM_SUBSCRIBE
from invispose.store import Store
from tests.deployments.serving import SECRET, Server, site


def form(**fields: str) -> bytes:
    return urllib.parse.urlencode(fields).encode()


FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def test_client_credentials_give_a_token_of_the_keys_scopes(store: Store) -> None:
    with Server(site(), store) as srv:
        key = srv.key(POSE_READ, STREAM_SUBSCRIBE)
        key_id = key.split("_")[1]
        status, headers, body = srv.call("POST", "/api/v1/auth/token", headers=FORM, body=form(
            grant_type="client_credentials", client_id=key_id, client_secret=key))
        assert status == 200, body
        assert body["token_type"] == "Bearer" and body["expires_in"] == 86_400
        assert body["scope"] == "pose:read stream:subscribe"
        assert headers["Cache-Control"] == "no-store"
        token = body["access_token"]
        assert srv.call("GET", "/openapi.json", credential=token)[0] == 200
        # narrower on request; never wider
        status, _, body = srv.call("POST", "/api/v1/auth/token", headers=FORM, body=form(
            grant_type="client_credentials", client_secret=key, scope="pose:read"))
        assert status == 200 and body["scope"] == "pose:read"
        status, _, body = srv.call("POST", "/api/v1/auth/token", headers=FORM, body=form(
            grant_type="client_credentials", client_secret=key, scope="admin:all"))
        assert (status, body["error"]) == (400, "invalid_scope")
        # RFC 6749 errors, not problem+json
        status, _, body = srv.call("POST", "/api/v1/auth/token", headers=FORM, body=form(
            grant_type="password", client_secret=key))
        assert (status, body["error"]) == (400, "unsupported_grant_type")
        status, _, body = srv.call("POST", "/api/v1/auth/token", headers=FORM, body=form(
            grant_type="client_credentials", client_id=key_id, client_secret=key + "x"))
        assert (status, body["error"]) == (401, "invalid_client")
        status, _, body = srv.call("POST", "/api/v1/auth/token", body=b"{}",
                                   headers={"Content-Type": "application/json"})
        assert (status, body["error"]) == (400, "invalid_request")


def test_keys_are_created_listed_and_revoked_by_an_admin_only(store: Store) -> None:
    with Server(site(), store) as srv:
        admin = srv.key(ADMIN_ALL)
        reader = srv.key(POSE_READ)
        payload = json.dumps({"name": "dashboard", "scopes": [POSE_READ]}).encode()
        json_type = {"Content-Type": "application/json"}
        assert srv.call("POST", "/api/v1/auth/keys", credential=reader, headers=json_type,
                        body=payload)[0] == 403
        status, _, created = srv.call("POST", "/api/v1/auth/keys", credential=admin,
                                      headers=json_type, body=payload)
        assert status == 201 and created["key"].startswith("ivp_")
        status, _, listed = srv.call("GET", "/api/v1/auth/keys", credential=admin)
        assert status == 200 and created["id"] in [k["id"] for k in listed]
        assert created["key"] not in json.dumps(listed)  # never shown again
        assert all("digest" not in k for k in listed)
        new_key = created["key"]
        assert srv.call("GET", "/openapi.json", credential=new_key)[0] == 200
        assert srv.call("DELETE", f"/api/v1/auth/keys/{created['id']}", credential=admin)[0] \
            == 204
        status, _, body = srv.call("GET", "/openapi.json", credential=new_key)
        assert status == 401 and body["reason"] == "revoked"
        assert srv.call("DELETE", f"/api/v1/auth/keys/{created['id']}", credential=admin)[0] \
            == 404
        bad = json.dumps({"name": "x", "scopes": ["root"]}).encode()
        status, headers, body = srv.call("POST", "/api/v1/auth/keys", credential=admin,
                                         headers=json_type, body=bad)
        assert status == 422 and headers["content-type"] == "application/problem+json"


def test_a_key_made_by_the_cli_beside_a_running_gateway_is_seen(store: Store) -> None:
    with Server(site(), store) as srv:
        admin = srv.key(ADMIN_ALL)
        assert srv.call("GET", "/openapi.json", credential=admin)[0] == 200  # ring loaded
        late = srv.key(POSE_READ)  # written to the store directly, as `invispose keys` does
        assert srv.call("GET", "/openapi.json", credential=late)[0] == 200
        deadline = time.monotonic() + 60
        while None in [k.last_used_s for k in store.keys()]:  # both uses, written back
            assert time.monotonic() < deadline, "last use never reached the store"
            time.sleep(0.05)


def test_errors_are_problem_json_without_internals(store: Store) -> None:
    with Server(site(), store) as srv:
        reader, admin = srv.key(POSE_READ), srv.key(ADMIN_ALL)
        status, headers, body = srv.call("GET", "/api/v1/pose/current")
        assert status == 401 and headers["content-type"] == "application/problem+json"
        assert body["type"] == "about:blank" and body["title"] == "Unauthorized"
        assert body["status"] == 401 and body["instance"] == "/api/v1/pose/current"
        assert body["reason"] == "missing"
        assert headers["WWW-Authenticate"].startswith('Bearer realm="invispose"')
        status, headers, body = srv.call("GET", "/api/v1/pose/current", credential="x.y.z")
        assert status == 401 and 'error="invalid_token"' in headers["WWW-Authenticate"]
        status, headers, body = srv.call("GET", "/api/v1/system/status", credential=reader)
        assert status == 403 and body["required_scope"] == "system:read"
        assert 'error="insufficient_scope"' in headers["WWW-Authenticate"]
        hostile = json.dumps({"name": "<script>" * 100, "scopes": "pose:read"}).encode()
        status, _, body = srv.call("POST", "/api/v1/auth/keys", credential=admin, body=hostile,
                                   headers={"Content-Type": "application/json"})
        assert status == 422 and ["body", "name"] in [e["loc"] for e in body["errors"]]
        assert "<script>" not in json.dumps(body)  # where and why, never the input
        status, headers, body = srv.call("GET", "/api/v1/nothing-here", credential=reader)
        assert status == 404 and headers["content-type"] == "application/problem+json"


def test_docs_need_a_credential_and_can_be_switched_off(store: Store) -> None:
    with Server(site(), store) as srv:
        key = srv.key(POSE_READ)
        assert srv.call("GET", "/openapi.json")[0] == 401
        assert srv.call("GET", "/docs")[0] == 401
        status, _, page = srv.call("GET", f"/docs?token={key}")
        assert status == 200 and f"/openapi.json?token={key}" in page
        assert srv.call("GET", f"/openapi.json?token={key}")[0] == 200
        assert srv.call("GET", f"/api/v1/pose/current?token={key}")[0] == 401  # docs only
    with Server(site(api={"docs": False}), store) as srv:
        assert srv.call("GET", "/openapi.json", credential=srv.key(POSE_READ))[0] == 404


def test_versions_are_negotiated_and_a_deprecated_one_says_so(store: Store) -> None:
    with Server(site(), store) as srv:
        key = srv.key(POSE_READ)
        status, headers, body = srv.call("GET", "/api/v1/pose/current", credential=key,
                                         headers={"Accept": "application/json; version=v7"})
        assert status == 406 and "v1" in body["detail"]
        status, headers, _ = srv.call("GET", "/api/v1/pose/zones", credential=key,
                                      headers={"Accept": "application/json; version=v1"})
        assert "Deprecation" not in headers
    deprecated = {"versions": {"v1": {"deprecated": True, "deprecated_since": "2026-06-01",
                                      "sunset_date": "2027-06-01"}}}
    with Server(site(api=deprecated), store) as srv:
        status, headers, _ = srv.call("GET", "/api/v1/auth/keys", credential=srv.key(ADMIN_ALL))
        assert status == 200
        assert headers["Deprecation"] == "@1780272000"
        assert headers["Sunset"] == "Tue, 01 Jun 2027 00:00:00 GMT"
        assert 'rel="deprecation"' in headers["Link"]


def test_cors_answers_preflights_for_listed_origins_only(store: Store) -> None:
    cors = {"cors": {"allow_origins": ["https://app.example"]}}
    with Server(site(api=cors), store) as srv:
        ask = {"Access-Control-Request-Method": "GET",
               "Access-Control-Request-Headers": "Authorization"}
        status, headers, _ = srv.call("OPTIONS", "/api/v1/pose/current",
                                      headers={"Origin": "https://app.example", **ask})
        assert status == 200
        assert headers["access-control-allow-origin"] == "https://app.example"
        assert "Authorization" in headers["access-control-allow-headers"]
        assert "access-control-allow-credentials" not in {k.lower() for k in headers}
        status, headers, _ = srv.call("OPTIONS", "/api/v1/pose/current",
                                      headers={"Origin": "https://evil.example", **ask})
        assert status == 400
        assert "access-control-allow-origin" not in {k.lower() for k in headers}


def test_rate_limits_trip_with_retry_after_and_recover(store: Store) -> None:
    limits = {"rate_limits": {"authenticated": {"requests": 3, "window_s": 1.0}}}
    with Server(site(api=limits), store) as srv:
        key = srv.key(POSE_READ)
        deadline = time.monotonic() + 60
        while True:  # start at a fresh window, so three fit in it on a slow machine too
            status, headers, _ = srv.call("GET", "/openapi.json", credential=key)
            if status == 429:
                break
            assert time.monotonic() < deadline
        assert headers["Retry-After"] == "1" and headers["X-RateLimit-Remaining"] == "0"
        assert headers["RateLimit-Policy"] == '"authenticated";q=3;w=1'
        while srv.call("GET", "/openapi.json", credential=key)[0] == 429:
            assert time.monotonic() < deadline, "the limit never recovered"
        status, headers, _ = srv.call("GET", "/openapi.json", credential=key)
        assert "X-RateLimit-Limit" in headers and headers["X-RateLimit-Limit"] == "3"
        premium = srv.key(POSE_READ, tier="premium")  # the seed's premium tier
        status, headers, _ = srv.call("GET", "/openapi.json", credential=premium)
        assert status == 200 and headers["RateLimit-Policy"] == '"premium";q=10000;w=3600'


def test_failed_authentications_are_limited_per_address(store: Store) -> None:
    with Server(site(auth={"jwt_secret": SECRET, "failures_per_minute": 3}), store) as srv:
        good = srv.key(POSE_READ)
        codes = [srv.call("GET", "/openapi.json", credential="ivp_" + "0" * 12 + "_" + "A" * 43
                          )[0] for _ in range(4)]
        assert codes == [401, 401, 401, 429]
        status, headers, body = srv.call("GET", "/openapi.json", credential=good)
        assert status == 429 and int(headers["Retry-After"]) >= 1  # until the minute ends


def test_the_stream_refuses_foreign_pages_and_missing_or_weak_credentials(
    store: Store,
) -> None:
    async def attempt(srv: Server, headers: dict[str, str], query: str = "",
                      protocols: tuple[str, ...] = ()) -> Any:
        async with aiohttp.ClientSession() as session:
            try:
                async with session.ws_connect(
                    f"{srv.base}/ws/v1/stream{query}", headers=headers, protocols=protocols,
                    timeout=aiohttp.ClientWSTimeout(ws_close=10),
                ) as ws:
                    message = await ws.receive(timeout=10)
                    return message.type, ws.close_code
            except aiohttp.WSServerHandshakeError as exc:
                return "refused", exc.status

    with Server(site(), store) as srv:
        reader = srv.key(POSE_READ)
        streamer = srv.key(STREAM_SUBSCRIBE)
        evil = {"Origin": "https://evil.example"}
        assert asyncio.run(attempt(srv, {**evil, "Authorization": f"Bearer {streamer}"})) \
            == ("refused", 403)
        closed = aiohttp.WSMsgType.CLOSE
        assert asyncio.run(attempt(srv, {})) == (closed, 4001)
        assert asyncio.run(attempt(srv, {}, "?token=junk")) == (closed, 4001)
        assert asyncio.run(attempt(srv, {}, f"?token={reader}")) == (closed, 4003)
        assert asyncio.run(attempt(srv, {}, "", ("bearer", "junk"))) == (closed, 4001)
        assert srv.state.clients.stats()["origin_refused"] == 1
        assert srv.state.clients.stats()["auth_refused"] == 4


def test_auth_off_on_loopback_opens_every_route_and_warns(
    store: Store, caplog: Any
) -> None:
    from deployments.app import warn_if_open

    open_site = site(auth={"enabled": False})
    with caplog.at_level("WARNING"):
        assert warn_if_open(open_site)
    assert "auth.enabled is false" in caplog.text
    assert not warn_if_open(site())
    with Server(open_site, store) as srv:
        assert srv.call("GET", "/openapi.json")[0] == 200
        assert srv.call("GET", "/api/v1/auth/keys")[0] == 200
