"""Shared fixtures: the real captures beside the project and seeded randomness."""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_CSI = PROJECT_ROOT.parent / "shared" / "data" / "csi"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Folder of the real CSI captures and their reference decodings."""
    assert SHARED_CSI.is_dir(), f"real captures not found at {SHARED_CSI}"
    return SHARED_CSI


@pytest.fixture()
def rng() -> np.random.Generator:
    """A seeded generator, fresh per test."""
    return np.random.default_rng(1234)


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
