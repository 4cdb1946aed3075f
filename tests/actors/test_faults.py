"""Faults while streaming: space (routers and tracker), router group and store actors die
and come back."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import make_site
from tests.unit.tracking.skeletons import detection, skeleton

pytestmark = pytest.mark.slow

# deadlines for a loaded 2-core machine (CI shares it): a passing run never waits them out
DEADLINE_S = 300.0


def wait_for(predicate: Callable[[], Any], timeout_s: float, what: str) -> Any:
    """Poll until ``predicate`` returns something truthy."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture()
def system(
    ray_cluster: int, random_checkpoint: Path, shared_data: Path, tmp_path: Path
) -> Iterator[Any]:
    from deployments.app import start_system, stop_system

    routers = [
        {
            "id": "replay",
            "space": "living_room",
            "kind": "file",
            "source": {"path": str(shared_data / "esp32/example_100hz_pitraffic.csv")},
            "tx_positions_m": [[0.3, 0.2, 1.5]],
            "rx_positions_m": [[5.7, 4.8, 1.2]],
        }
    ]
    site = make_site(tmp_path, ray_cluster, random_checkpoint, routers=routers)
    supervisor = start_system(site)
    try:
        yield supervisor
    finally:
        stop_system(supervisor)


def events(kind: str | None = None) -> list[dict[str, Any]]:
    import ray

    from actors.common import NAMESPACE, STORE_NAME

    store = ray.get_actor(STORE_NAME, namespace=NAMESPACE)
    got = ray.get(store.query.remote("events_since", 0, 1000))
    return [e.model_dump() for e in got if kind is None or e.type == kind]


def router_state(supervisor: Any) -> str:
    import ray

    return str(ray.get(supervisor.routers_status.remote())[0]["state"])


def test_killed_router_comes_back_and_says_so(system: Any) -> None:
    import ray

    from actors.common import NAMESPACE, space_name

    wait_for(lambda: events("router.connected"), DEADLINE_S, "router.connected")
    # the router runs in its space's process
    ray.kill(ray.get_actor(space_name("living_room"), namespace=NAMESPACE), no_restart=False)
    wait_for(lambda: events("router.disconnected"), DEADLINE_S, "router.disconnected")
    wait_for(lambda: len(events("router.connected")) >= 2, DEADLINE_S, "router.connected again")
    status = ray.get(system.routers_status.remote())[0]
    assert status["state"] == "connected" and status["packets"] > 0


def test_killed_store_loses_no_stored_event(system: Any) -> None:
    import ray

    from actors.common import NAMESPACE, STORE_NAME

    # the router must have been seen connected first, or its restart is no disconnection
    before = wait_for(
        lambda: events("router.connected") and events(), DEADLINE_S, "router.connected"
    )
    ray.kill(ray.get_actor(STORE_NAME, namespace=NAMESPACE), no_restart=False)
    # the router's restart produces new events through the restarted store
    from actors.common import space_name

    ray.kill(ray.get_actor(space_name("living_room"), namespace=NAMESPACE), no_restart=False)

    def reconnected() -> list[dict[str, Any]]:
        got = events()
        kinds = [e["type"] for e in got]
        return (
            got if "router.disconnected" in kinds and kinds.count("router.connected") >= 2 else []
        )

    try:
        after = wait_for(reconnected, DEADLINE_S, "router events through the restarted store")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; stored: {[e['type'] for e in events()]}") from None
    ids = [e["id"] for e in after]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert [e["id"] for e in after[: len(before)]] == [e["id"] for e in before]
    assert {e["type"] for e in after} >= {
        "system.started",
        "router.connected",
        "router.disconnected",
    }


def test_killed_tracker_keeps_person_ids(ray_cluster: int, tmp_path: Path) -> None:
    import ray

    from actors.bus import BusActor
    from actors.common import actor_options
    from actors.space import SpaceActor
    from actors.store import StoreActor
    from invispose.config import parse_config

    site = parse_config(
        {
            "spaces": [{"id": "lab", "size_m": [6.0, 5.0, 3.0]}],
            "routers": [
                {
                    "id": "r1",
                    "space": "lab",
                    "kind": "esp32-udp",
                    "source": {},
                    "tx_positions_m": [[0, 0, 1]],
                    "rx_positions_m": [[6, 5, 1]],
                }
            ],
            "mqtt": {"enabled": False},
        },
        env={},
    )
    store = StoreActor.options(**actor_options("t.store")).remote(str(tmp_path / "t.db"))
    bus = BusActor.options(**actor_options("t.bus")).remote()
    tracker = SpaceActor.options(**actor_options("t.tracker")).remote(
        site.model_dump(mode="json"), "lab", store, bus
    )
    try:
        ray.get(tracker.start.remote())

        def walk(t0: float, steps: int) -> None:
            for i in range(steps):
                x = 1.0 + 0.05 * (t0 + i)
                ray.get(
                    tracker.submit.remote(
                        detection(
                            [skeleton("standing", x, 2.5)],
                            time.time(),
                            router_id="r1",
                            space_id="lab",
                        )
                    )
                )
                time.sleep(0.05)

        walk(0, 20)
        persons = ray.get(tracker.status.remote())["persons"]
        assert len(persons) == 1
        time.sleep(1.5)  # a snapshot is taken every second
        ray.kill(tracker, no_restart=False)
        walk(20, 20)
        assert ray.get(tracker.status.remote())["persons"] == persons
    finally:
        for actor in (tracker, store, bus):
            ray.kill(actor, no_restart=True)


def test_routers_stop_and_start_at_runtime(system: Any, shared_data: Path) -> None:
    import ray

    wait_for(lambda: router_state(system) == "connected", DEADLINE_S, "the replay router")
    assert ray.get(system.remove_router.remote("replay")) is True
    assert ray.get(system.routers_status.remote()) == []
    added = {
        "id": "replay2",
        "space": "living_room",
        "kind": "file",
        "source": {"path": str(shared_data / "intel5300/los_100.dat")},
        "tx_positions_m": [[0.3, 0.2, 1.5]],
        "rx_positions_m": [[5.7, 4.8, 1.2], [5.67, 4.8, 1.2], [5.64, 4.8, 1.2]],
    }
    assert ray.get(system.add_router.remote(added)) is True
    wait_for(lambda: router_state(system) == "connected", DEADLINE_S, "the added router")
    status = ray.get(system.routers_status.remote())
    assert [s["id"] for s in status] == ["replay2"] and status[0]["packets"] > 0
    with pytest.raises(ray.exceptions.RayTaskError, match="already runs"):
        ray.get(system.add_router.remote(added))


def test_concurrent_starts_keep_one_store(
    ray_cluster: int, random_checkpoint: Path, tmp_path: Path
) -> None:
    """A health probe that arrives while the supervisor starts calls start() again: the
    second call must wait for the first, not replace (and so free) the actors it made."""
    import ray

    from actors.common import NAMESPACE, STORE_NAME, SUPERVISOR_NAME, actor_options
    from actors.supervisor import SupervisorActor
    from deployments.app import stop_system

    site = make_site(tmp_path, ray_cluster, random_checkpoint, routers=[])
    supervisor = SupervisorActor.options(**actor_options(SUPERVISOR_NAME)).remote(
        site.model_dump(mode="json")
    )
    try:
        ray.get([supervisor.start.remote() for _ in range(4)], timeout=DEADLINE_S)
        store = ray.get_actor(STORE_NAME, namespace=NAMESPACE)
        assert ray.get(store.ping.remote(), timeout=DEADLINE_S)
        assert ray.get(supervisor.routers_status.remote(), timeout=DEADLINE_S) == []
    finally:
        stop_system(supervisor)


def test_events_survive_a_failed_store_write(ray_cluster: int, tmp_path: Path) -> None:
    """Another process holds the database's write lock (a backup, say) longer than the
    store waits: the step's events stay with the tracker and are stored, in order, by
    the next step that gets through."""
    import sqlite3

    import ray

    from actors.bus import BusActor
    from actors.common import actor_options
    from actors.space import SpaceActor
    from actors.store import StoreActor
    from invispose.config import parse_config

    site = parse_config(
        {
            "spaces": [{"id": "lab", "size_m": [6.0, 5.0, 3.0]}],
            "routers": [{
                "id": "r1", "space": "lab", "kind": "esp32-udp", "source": {},
                "tx_positions_m": [[0, 0, 1]], "rx_positions_m": [[6, 5, 1]],
            }],
            "mqtt": {"enabled": False},
        },
        env={},
    )
    path = tmp_path / "e.db"
    store = StoreActor.options(**actor_options("e.store")).remote(str(path))
    bus = BusActor.options(**actor_options("e.bus")).remote()
    tracker = SpaceActor.options(**actor_options("e.tracker")).remote(
        site.model_dump(mode="json"), "lab", store, bus
    )

    def stored(kind: str) -> list[Any]:
        return [e for e in ray.get(store.query.remote("events_since", 0, 1000)) if e.type == kind]

    # a person walks at a router's pace the whole time (the tracker forgets a person
    # after a second without detections, and the checks below may wait longer than that)
    walking = threading.Event()
    submitted = [0]  # detections whose submit call has returned

    def walk() -> None:
        while not walking.is_set():
            x = 1.0 + abs((0.01 * submitted[0]) % 3.0 - 1.5)  # back and forth, 0.2 m/s
            ray.get(tracker.submit.remote(detection(
                [skeleton("standing", x, 2.5)], time.time(), router_id="r1", space_id="lab"
            )))
            submitted[0] += 1
            time.sleep(0.05)

    walker = threading.Thread(target=walk, daemon=True)
    try:
        ray.get(tracker.start.remote())
        ray.get(store.ping.remote())
        locker = sqlite3.connect(path, isolation_level=None, timeout=60)
        locker.execute("BEGIN EXCLUSIVE")  # nobody else may write until we end it
        try:
            walker.start()  # a person appears while the store cannot write
            wait_for(lambda: ray.get(tracker.status.remote())["event_store_errors"], DEADLINE_S,
                     "a failed event write")
            assert ray.get(tracker.status.remote())["persons"]
            # nothing on the hot path waits for the store: while it cannot write, every
            # detection is tracked before its submit returns, and frames reach the bus
            first = ray.get(bus.latest_frames.remote())["lab"]["text"]
            done = submitted[0]
            status = ray.get(tracker.status.remote())
            assert done >= 10 and status["steps"] >= done
            assert status["frames_unpublished"] == 0
            wait_for(lambda: ray.get(bus.latest_frames.remote())["lab"]["text"] != first,
                     DEADLINE_S, "a pose frame while the store is locked")
            assert not stored("person.detected")
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        # the walk goes on; the writer's next try gets through
        detected = wait_for(lambda: stored("person.detected"), DEADLINE_S, "the kept event")
        assert len(detected) == 1 and detected[0].space_id == "lab"
        wait_for(lambda: ray.get(tracker.status.remote())["events_unsent"] == 0, DEADLINE_S,
                 "every kept event written")
    finally:
        walking.set()
        walker.join(timeout=DEADLINE_S)
        for actor in (tracker, store, bus):
            ray.kill(actor, no_restart=True)


def test_routers_beyond_a_space_process_share_feed_its_hops_and_restart(
    ray_cluster: int, random_checkpoint: Path, shared_data: Path, tmp_path: Path
) -> None:
    """``runtime.routers_per_process: 1``: the second router of the space runs in a router
    group, whose windows join the space's own in one inference request per hop; killed,
    the group comes back with its router."""
    import ray

    from actors.common import BUS_NAME, NAMESPACE, router_group_name
    from deployments.app import start_system, stop_system
    from invispose.bus import pose_frame

    routers = [
        {
            "id": rid,
            "space": "living_room",
            "kind": "file",
            "source": {"path": str(shared_data / "esp32/example_100hz_pitraffic.csv"),
                       "loop": True},
            "tx_positions_m": [[0.3, 0.2, 1.5]],
            "rx_positions_m": [[5.7, y, 1.2]],
        }
        for rid, y in (("own", 4.8), ("grouped", 3.0))
    ]
    site = make_site(tmp_path, ray_cluster, random_checkpoint, routers=routers,
                     runtime={"routers_per_process": 1})
    supervisor = start_system(site)
    try:
        bus = ray.get_actor(BUS_NAME, namespace=NAMESPACE)

        def fused() -> bool:
            latest = ray.get(bus.latest_frames.remote()).get("living_room")
            if not latest:
                return False
            sources = pose_frame(latest)["metadata"].get("routers", [])  # "a+b" per detection
            return {r for joined in sources for r in joined.split("+")} == {"own", "grouped"}

        wait_for(fused, DEADLINE_S, "a frame made of both routers' windows")
        group = ray.get_actor(router_group_name("living_room", 0), namespace=NAMESPACE)
        assert [s["id"] for s in ray.get(group.routers_status.remote())] == ["grouped"]
        ray.kill(group, no_restart=False)

        def states() -> dict[str, str]:
            return {s["id"]: s["state"] for s in ray.get(supervisor.routers_status.remote())}

        wait_for(lambda: states()["grouped"] != "connected", DEADLINE_S, "the group's router down")
        wait_for(lambda: states() == {"own": "connected", "grouped": "connected"}, DEADLINE_S,
                 "the group's router back")
        wait_for(fused, DEADLINE_S, "fused frames again")
    finally:
        stop_system(supervisor)
