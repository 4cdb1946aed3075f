"""The gateway app served by uvicorn on loopback without Ray, its security over a real store
file (the keys live where the system keeps them)."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import uvicorn

from actors.store import LocalStore
from deployments.api.auth import GatewaySecurity
from deployments.api.state import GatewayState
from deployments.api.stream import ClientRegistry
from deployments.gateway import app
from invispose.config import SiteConfig, parse_config
from invispose.security import key_digest, new_api_key
from invispose.store import Store
from tests.conftest import free_port

SECRET = "k" * 40
BASE_SITE: dict[str, Any] = {
    "spaces": [{"id": "lab", "size_m": [6, 5, 3]}],
    "auth": {"jwt_secret": SECRET, "recheck_s": 0.2},
}


class Server:
    """The gateway app on a loopback port, its security over ``store``."""

    def __init__(self, site: SiteConfig, store: Store) -> None:
        self.store = store
        self.guard = GatewaySecurity(site, SECRET, LocalStore(store))
        state = GatewayState(site)
        ClientRegistry(state)
        state.security = self.guard
        self.state = state
        app.state.security, app.state.gateway = self.guard, state
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        assert self.server.started, "uvicorn did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        del app.state.security, app.state.gateway

    def key(self, *scopes: str, tier: str = "authenticated") -> str:
        record, key = new_api_key("test", list(scopes), tier)
        self.store.key_add(record, key_digest(key))
        return key

    def call(
        self, method: str, path: str, *, credential: str | None = None,
        headers: dict[str, str] | None = None, body: bytes | None = None,
    ) -> tuple[int, Any, Any]:
        request = urllib.request.Request(self.base + path, method=method, data=body,
                                         headers=dict(headers or {}))
        if credential is not None:
            request.add_header("Authorization", f"Bearer {credential}")
        try:
            with urllib.request.urlopen(request, timeout=30) as resp:
                status, hdrs, raw = resp.status, resp.headers, resp.read()
        except urllib.error.HTTPError as exc:
            status, hdrs, raw = exc.code, exc.headers, exc.read()
        text = raw.decode()
        try:
            return status, hdrs, json.loads(text) if text else None
        except json.JSONDecodeError:
            return status, hdrs, text


def site(**overrides: Any) -> SiteConfig:
    return parse_config({**BASE_SITE, **overrides}, env={})
