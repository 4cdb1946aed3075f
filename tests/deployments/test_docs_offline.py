"""/docs works with no internet access: Swagger UI's page and assets come from the gateway."""

from __future__ import annotations

import re
import urllib.request

from invispose.security import POSE_READ
from invispose.store import Store
from tests.deployments.serving import Server, site


def fetch(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=30) as resp:
        return resp.status, resp.read()


def test_docs_page_and_its_assets_are_served_locally(store: Store) -> None:
    with Server(site(), store) as srv:
        token = srv.key(POSE_READ)
        status, page = fetch(f"{srv.base}/docs?token={token}")
        html = page.decode()
        assert status == 200 and "SwaggerUIBundle" in html
        urls = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html)
        urls += re.findall(r"""url: ?["']([^"']+)["']""", html)
        assert urls and not [u for u in urls if u.startswith(("http:", "https:", "//"))], urls
        for url in {u for u in urls if u.startswith("/")}:
            status, body = fetch(srv.base + url)
            assert status == 200 and len(body) > 100, url
        status, spec = fetch(f"{srv.base}/openapi.json?token={token}")
        assert status == 200 and b"/api/v1/system/health" in spec
