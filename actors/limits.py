"""LimitsActor: the one count behind each rate limit when several gateway replicas serve.

Replicas take tokens from it in leases (``invispose.security.LeasedLimiter``): one call
per lease, not per request. With one gateway replica (the default) nothing uses it and it
is not started.
"""

from __future__ import annotations

import ray

from invispose.security import WindowCounts


class LimitsHost:
    """Fixed-window counts per (policy, client), shared by every gateway replica."""

    def __init__(self) -> None:
        self.counts = WindowCounts()

    async def take(self, policy: str, client: str, index: int, want: int, limit: int
                   ) -> tuple[int, int]:
        """Up to ``want`` tokens of the window's remainder: (granted, used since)."""
        return self.counts.take(policy, client, index, want, limit)

    async def ping(self) -> bool:
        """Liveness check."""
        return True


LimitsActor = ray.remote(LimitsHost)
