"""Opening databases: creation, the schema version guard, read-only readers."""

from __future__ import annotations

import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from invispose.config import StoreConfig
from invispose.errors import InvisPoseError
from invispose.schemas import Event
from invispose.store import SCHEMA_VERSION, Store

from .conftest import FrameFactory, at


def test_creates_parent_folders_and_uses_wal(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "invispose.db"
    store = Store.from_config(StoreConfig(path=path, history_days=3.0))
    assert path.is_file() and store.history_days == 3.0
    store.close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT max(version) FROM schema_version").fetchone()[0] == SCHEMA_VERSION
    conn.close()
    with Store(path) as again:  # reopening an existing store is fine
        assert again.events_since(0) == []


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    Store(path).close()
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO schema_version VALUES (?, 0)", (SCHEMA_VERSION + 1,))
    conn.commit()
    conn.close()
    with pytest.raises(InvisPoseError, match="newer"):
        Store(path)
    with pytest.raises(InvisPoseError, match="newer"):
        Store.open_readonly(path)


def test_foreign_files_are_refused(tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE notes (x)")
    conn.commit()
    conn.close()
    with pytest.raises(InvisPoseError, match="not an InvisPose store"):
        Store(other)
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(InvisPoseError, match="cannot open store"):
        Store(junk)
    with pytest.raises(InvisPoseError, match="directory"):
        Store(tmp_path)
    with pytest.raises(InvisPoseError, match="does not exist"):
        Store.open_readonly(tmp_path / "missing.db")
    with pytest.raises(InvisPoseError, match="history_days"):
        Store(tmp_path / "x.db", history_days=0)


def test_reader_sees_committed_writes_while_writer_is_open(
    tmp_path: Path, make_frame: FrameFactory
) -> None:
    path = tmp_path / "s.db"
    writer = Store(path)
    reader = Store.open_readonly(path)
    try:
        writer.add_pose_frame("home", make_frame(1.0))
        assert reader.history(at(0), at(9)) == []
        writer.flush()
        writer.add_pose_frame("home", make_frame(2.0))  # buffered only
        assert [f.frame_id for f in reader.history(at(0), at(9))] == [1]
        (event,) = writer.append_events([Event(type="router.connected", timestamp=at(0))])
        assert reader.events_since(0) == [event]
        writer.put_zone("z", {"restricted": True})
        assert reader.zones() == {"z": {"restricted": True}}
        person = reader.person("p1")
        assert person is not None and person["last_seen"] == at(1.0)
        with pytest.raises(InvisPoseError, match="read-only"):
            reader.append_events([Event(type="router.connected", timestamp=at(0))])
        with pytest.raises(InvisPoseError, match="read-only"):
            reader.add_pose_frame("home", make_frame(3.0))
        with pytest.raises(InvisPoseError, match="read-only"):
            reader.put_zone("y", {})
    finally:
        reader.close()
        writer.close()


def test_close_flushes_and_closed_store_refuses(tmp_path: Path, make_frame: FrameFactory) -> None:
    path = tmp_path / "s.db"
    store = Store(path)
    store.add_pose_frame("home", make_frame(1.0))
    store.close()
    store.close()  # idempotent
    with pytest.raises(InvisPoseError, match="closed"):
        store.history(at(0), at(9))
    with Store(path) as again:
        assert len(again.history(at(0), at(9))) == 1
        again.add_pose_frame("home", make_frame(2.0))
        again.close(flush=False)  # loses only the buffer
    with Store(path) as again:
        assert len(again.history(at(0), at(9))) == 1


def test_a_store_may_be_called_from_worker_threads(
    tmp_path: Path, make_frame: FrameFactory
) -> None:
    frames = [make_frame(i) for i in range(40)]
    with Store(tmp_path / "s.db") as store, ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda f: store.add_pose_frame("home", f), frames))
        events = list(
            pool.map(
                lambda i: store.append_events([Event(type="x", timestamp=at(0), data={"i": i})]),
                range(8),
            )
        )
        pool.submit(store.flush).result()
        assert len(store.history(at(0), at(99))) == 40
        assert sorted(e.id or 0 for batch in events for e in batch) == list(range(1, 9))
