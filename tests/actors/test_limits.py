"""Gateway replicas share one rate limit through the limits actor (real Ray)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from actors.store import LocalStore
from deployments.api.auth import GatewaySecurity, limits_take
from invispose.config import parse_config
from invispose.security import POSE_READ, Principal, RateLimited
from invispose.store import Store


def test_two_replicas_admit_exactly_the_limit_together(ray_cluster: int, tmp_path: Path) -> None:
    import ray

    from actors.common import LIMITS_NAME, NAMESPACE

    site = parse_config({
        "spaces": [{"id": "lab", "size_m": [5, 4, 3]}],
        "auth": {"jwt_secret": "t" * 40},
        "serve": {"gateway_replicas": 2},
        "api": {"rate_limits": {"authenticated": {"requests": 40, "window_s": 3600}}},
    }, env={})
    store = Store(tmp_path / "s.db")
    replicas = [GatewaySecurity(site, "t" * 40, LocalStore(store), share=2, take=limits_take())
                for _ in range(2)]
    alice = Principal("alice", frozenset({POSE_READ}), "jwt")

    async def admitted(replica: GatewaySecurity, n: int) -> int:
        count = 0
        for _ in range(n):
            try:
                await replica.limit(alice, "10.0.0.1")
                count += 1
            except RateLimited:
                pass
        return count

    try:
        # all on one replica: the whole limit there (each replica's half would give 20)
        first = asyncio.run(admitted(replicas[0], 60))
        later = asyncio.run(admitted(replicas[1], 60))  # and nothing left for the other
        # (a window turning over mid-run, at a whole hour, would add one limit at most)
        assert (first, later) == (40, 0) or (first >= 40 and first + later <= 80)
        assert all(r.counts["shared_limit_errors"] == 0 for r in replicas)
    finally:
        store.close()
        ray.kill(ray.get_actor(LIMITS_NAME, namespace=NAMESPACE), no_restart=True)
