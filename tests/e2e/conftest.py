"""Site configs for end-to-end runs (the Ray cluster fixture is in tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from invispose.config import AuthConfig, SiteConfig, parse_config, resolve_paths
from invispose.security import ADMIN_ALL, TokenCodec
from tests.conftest import free_port

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
TEST_SECRET = "end-to-end-tests-" + "s" * 32  # every end-to-end site signs with this


def credential_headers(*scopes: str) -> dict[str, str]:
    """An Authorization header with a token of ``scopes`` (default admin:all) that the
    end-to-end sites accept."""
    codec = TokenCodec.from_config(AuthConfig(jwt_secret=TEST_SECRET))
    token, _ = codec.issue("e2e-tests", list(scopes) or [ADMIN_ALL], ttl_s=6 * 3600)
    return {"Authorization": f"Bearer {token}"}


def make_site(
    tmp_path: Path,
    port: int,
    checkpoint: Path,
    routers: list[dict[str, Any]] | None = None,
    **overrides: Any,
) -> SiteConfig:
    """The default demo config, with a private store, the test's port and checkpoint."""
    tree = yaml.safe_load((CONFIGS / "default.yaml").read_text())
    if routers is not None:
        tree["routers"] = routers
    tree["store"] = {"path": str(tmp_path / "var" / "test.db")}
    tree["serve"] = {"host": "127.0.0.1", "port": port, "stream_port": free_port()}
    tree["model"] = {"checkpoint": str(checkpoint)}
    tree["mqtt"] = {"enabled": False}
    tree["auth"] = {"jwt_secret": TEST_SECRET}
    tree.update(overrides)
    return resolve_paths(parse_config(tree, env={}))
