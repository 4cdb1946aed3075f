"""Fixtures of the gateway tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from invispose.store import Store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A store file of the test's own (API keys are kept there)."""
    with Store(tmp_path / "var" / "test.db") as opened:
        yield opened
