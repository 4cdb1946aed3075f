"""Site configs for end-to-end runs (the Ray cluster fixture is in tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from invispose.config import SiteConfig, parse_config, resolve_paths
from tests.conftest import free_port

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


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
    tree.update(overrides)
    return resolve_paths(parse_config(tree, env={}))
