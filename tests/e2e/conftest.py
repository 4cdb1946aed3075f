"""One local Ray cluster for the whole session, Serve on a free port, and site builders."""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from invispose.config import SiteConfig, parse_config, resolve_paths

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[int]:
    """A private local Ray (2 CPUs, no dashboard) with Serve on a free port; yields the port."""
    os.environ["RAY_AUTH_MODE"] = "disabled"
    os.environ.pop("RAY_ADDRESS", None)
    import ray
    from ray import serve

    from actors.common import NAMESPACE

    temp_dir = tempfile.mkdtemp(prefix="rt", dir="/tmp")
    port = free_port()
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        _temp_dir=temp_dir,
        namespace=NAMESPACE,
        log_to_driver=False,
    )
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        yield port
    finally:
        serve.shutdown()
        ray.shutdown()


@pytest.fixture(scope="session")
def random_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained PoseNet: the runtime's plumbing does not depend on what it learned."""
    import torch

    from invispose.model.checkpoint import save_checkpoint
    from invispose.model.network import PoseNet

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "random.pt"
    save_checkpoint(path, PoseNet())
    return path


def make_site(
    tmp_path: Path, port: int, checkpoint: Path, routers: list[dict[str, Any]] | None = None,
    **overrides: Any,
) -> SiteConfig:
    """The default demo config, with a private store, the test's port and checkpoint."""
    tree = yaml.safe_load((CONFIGS / "default.yaml").read_text())
    if routers is not None:
        tree["routers"] = routers
    tree["store"] = {"path": str(tmp_path / "var" / "test.db")}
    tree["serve"] = {"host": "127.0.0.1", "port": port}
    tree["model"] = {"checkpoint": str(checkpoint)}
    tree["mqtt"] = {"enabled": False}
    tree.update(overrides)
    return resolve_paths(parse_config(tree, env={}))
