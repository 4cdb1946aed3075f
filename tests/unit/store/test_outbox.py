"""Webhook outbox: owed deliveries, retries, giving up, the delivery log."""

from __future__ import annotations

import pytest

from invispose.errors import InvisPoseError
from invispose.schemas import Event
from invispose.store import Store

from .conftest import at


def test_outbox_lifecycle(store: Store) -> None:
    events = store.append_events(
        [Event(type="person.fall_detected", timestamp=at(0), data={"n": i}) for i in range(3)]
    )
    a = store.outbox_add("hook-a", events[0].id or 0, now=100.0)
    assert store.outbox_add("hook-a", events[0].id or 0, now=150.0) == a  # idempotent
    b, c = store.outbox_add_many([("hook-b", 1), ("hook-a", 2)], now=101.0)
    assert len({a, b, c}) == 3

    assert store.outbox_due(now=99.0) == []
    due = store.outbox_due(now=101.0)
    assert [d["id"] for d in due] == [a, b, c]
    assert due[0]["event"] == events[0] and due[0]["attempts"] == 0
    assert due[0]["created_at"] == 100.0 and due[0]["state"] == "pending"
    assert [d["id"] for d in store.outbox_due(now=101.0, limit=1)] == [a]

    # a succeeds, b fails and retries later, c fails for good
    row = store.outbox_mark(a, True, status_code=200, duration_ms=12.5, now=102.0)
    assert row["state"] == "delivered" and row["attempts"] == 1
    row = store.outbox_mark(b, False, status_code=503, error="unavailable",
                            next_attempt_at=110.0, now=102.0)  # fmt: skip
    assert row["state"] == "pending" and row["next_attempt_at"] == 110.0
    store.outbox_mark(c, False, error="connect timeout", now=102.0)
    assert store.outbox_due(now=105.0) == []
    assert [d["id"] for d in store.outbox_due(now=110.0)] == [b]
    row = store.outbox_mark(b, True, status_code=204, now=111.0)
    assert row["attempts"] == 2 and row["state"] == "delivered"
    assert store.outbox_due(now=1e12) == []
    failed = store.outbox_get(c)
    assert failed is not None and failed["state"] == "failed"
    assert failed["last_error"] == "connect timeout"

    log = store.deliveries()
    assert [(d["outbox_id"], d["attempt"], d["delivered"]) for d in log] == [
        (b, 2, True), (c, 1, False), (b, 1, False), (a, 1, True),
    ]  # fmt: skip
    assert log[2]["status_code"] == 503 and log[2]["error"] == "unavailable"
    assert log[3]["duration_ms"] == 12.5 and log[3]["at"] == 102.0
    assert [d["outbox_id"] for d in store.deliveries("hook-b")] == [b, b]
    assert [d["outbox_id"] for d in store.deliveries(before_id=log[1]["id"])] == [b, a]

    with pytest.raises(InvisPoseError, match="already delivered"):
        store.outbox_mark(a, True)
    with pytest.raises(InvisPoseError, match="does not exist"):
        store.outbox_mark(999, True)


def test_outbox_refuses_unknown_events_and_bad_values(store: Store) -> None:
    with pytest.raises(InvisPoseError, match="not stored"):
        store.outbox_add("hook", 1)
    (event,) = store.append_events([Event(type="router.connected", timestamp=at(0))])
    oid = store.outbox_add("hook", event.id or 0)
    with pytest.raises(InvisPoseError):
        store.outbox_add("", 1)
    with pytest.raises(InvisPoseError):
        store.outbox_mark(oid, "yes")  # type: ignore[arg-type]
    with pytest.raises(InvisPoseError):
        store.outbox_mark(oid, False, status_code="500")  # type: ignore[arg-type]
    row = store.outbox_get(oid)
    assert row is not None and row["attempts"] == 0 and store.deliveries() == []


def test_prune_clears_old_finished_deliveries(store: Store) -> None:
    (event,) = store.append_events([Event(type="router.connected", timestamp=at(0))])
    done = store.outbox_add("hook-a", 1, now=at(0))
    pending = store.outbox_add("hook-b", 1, now=at(0))
    store.outbox_mark(done, True, now=at(0))
    store.prune(at(8 * 86_400.0))
    assert store.outbox_get(done) is None and store.deliveries() == []
    assert store.outbox_get(pending) is not None
    assert store.events_since(0) == [event]  # events are kept
