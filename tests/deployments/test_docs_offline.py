"""/docs works with no internet access: Swagger UI's page and assets come from the gateway."""

from __future__ import annotations

import re
import threading
import time
import urllib.request

import uvicorn

from deployments.gateway import app
from tests.conftest import free_port


def fetch(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=30) as resp:
        return resp.status, resp.read()


def test_docs_page_and_its_assets_are_served_locally() -> None:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.started, "uvicorn did not start"
        base = f"http://127.0.0.1:{port}"
        status, page = fetch(base + "/docs")
        html = page.decode()
        assert status == 200 and "SwaggerUIBundle" in html
        urls = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html)
        urls += re.findall(r"""url: ?["']([^"']+)["']""", html)
        assert urls and not [u for u in urls if u.startswith(("http:", "https:", "//"))], urls
        for url in {u for u in urls if u.startswith("/")}:
            status, body = fetch(base + url)
            assert status == 200 and len(body) > 100, url
        status, spec = fetch(base + "/openapi.json")
        assert status == 200 and b"/api/v1/system/health" in spec
    finally:
        server.should_exit = True
        thread.join(timeout=30)
