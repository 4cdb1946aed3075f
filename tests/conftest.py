"""Shared fixtures: the real captures beside the project and seeded randomness."""

from __future__ import annotations

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
