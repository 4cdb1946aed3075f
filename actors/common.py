"""Names, namespace and options shared by every InvisPose actor."""

from __future__ import annotations

from typing import Any

NAMESPACE = "invispose"
STORE_NAME = "invispose.store"
BUS_NAME = "invispose.bus"
SUPERVISOR_NAME = "invispose.supervisor"
WEBHOOKS_NAME = "invispose.webhooks"
MQTT_NAME = "invispose.mqtt"
LIMITS_NAME = "invispose.limits"  # rate-limit counts shared by gateway replicas
SERVE_APP = "invispose"
ESTIMATOR_DEPLOYMENT = "PoseEstimator"
GATEWAY_DEPLOYMENT = "Gateway"


def space_name(space_id: str) -> str:
    """Actor name of a space's host (its tracker and first routers)."""
    return f"invispose.space.{space_id}"


def router_group_name(space_id: str, index: int) -> str:
    """Actor name of a space's ``index``-th router group (routers beyond the space's own)."""
    return f"invispose.routers.{space_id}.{index}"


def actor_options(name: str, *, max_concurrency: int = 1000) -> dict[str, Any]:
    """Options of a long-lived, restartable, named service actor.

    num_cpus=0: actors here are I/O-bound hosts; the CPUs are left to inference (a
    2-core machine could otherwise place only two actors). Ray restarts a dead actor
    forever and retries calls that were in flight when it died.
    """
    return {
        "name": name,
        "namespace": NAMESPACE,
        "num_cpus": 0,
        "max_restarts": -1,
        "max_task_retries": -1,
        "max_concurrency": max_concurrency,
        "lifetime": None,
    }
