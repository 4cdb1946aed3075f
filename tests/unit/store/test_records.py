"""Router and zone rows, tracker snapshots and event cursors."""

from __future__ import annotations

from pathlib import Path

import pytest

from invispose.errors import InvisPoseError
from invispose.store import Store


def test_router_and_zone_rows(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with Store(path) as store:
        store.put_router("r2", {"format": "esp32", "position_m": [0.0, 1.0, 2.0]})
        store.put_router("r1", {"format": "nexmon"})
        store.put_router("r1", {"format": "nexmon", "port": 5500})  # replaces
        store.put_zone("kitchen", {"polygon_m": [[0, 0], [2, 0], [2, 2]], "restricted": False})
        store.put_zone("bath", {"polygon_m": [], "restricted": True})
        assert store.delete_zone("bath") is True
        assert store.delete_zone("bath") is False
    with Store(path) as store:
        assert store.routers() == {
            "r1": {"format": "nexmon", "port": 5500},
            "r2": {"format": "esp32", "position_m": [0.0, 1.0, 2.0]},
        }
        assert list(store.routers()) == ["r1", "r2"]
        assert store.router("r2") == {"format": "esp32", "position_m": [0.0, 1.0, 2.0]}
        assert store.router("r9") is None
        assert store.zones() == {
            "kitchen": {"polygon_m": [[0, 0], [2, 0], [2, 2]], "restricted": False}
        }
        assert store.delete_router("r2") and list(store.routers()) == ["r1"]


def test_bad_config_rows_are_refused(store: Store) -> None:
    with pytest.raises(InvisPoseError, match="mapping"):
        store.put_router("r1", ["not", "a", "dict"])  # type: ignore[arg-type]
    with pytest.raises(InvisPoseError, match="JSON"):
        store.put_zone("z", {"polygon": {1, 2}})
    with pytest.raises(InvisPoseError, match="id"):
        store.put_zone("", {})
    assert store.routers() == {} and store.zones() == {}


def test_snapshots_save_and_load(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    snap = {"next_id": 7, "tracks": [{"id": "p3", "state": [1.0, 2.5, 0.0, 0.1]}]}
    with Store(path) as store:
        assert store.load_snapshot("home") is None
        store.save_snapshot("home", {"next_id": 1})
        store.save_snapshot("home", snap)
        store.save_snapshot("garage", {"next_id": 2})
    with Store(path) as store:
        assert store.load_snapshot("home") == snap
        assert store.load_snapshot("garage") == {"next_id": 2}
        with pytest.raises(InvisPoseError):
            store.save_snapshot("home", {"f": float})


def test_cursors(store: Store) -> None:
    assert store.cursor("webhooks") == 0
    store.set_cursor("webhooks", 41)
    store.set_cursor("webhooks", 42)
    assert store.cursor("webhooks") == 42
    with pytest.raises(InvisPoseError):
        store.set_cursor("webhooks", -1)
