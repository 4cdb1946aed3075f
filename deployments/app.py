"""build_app(config): the one place where the Serve graph is bound; run_system starts all."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from typing import Any

import ray
from ray import serve
from ray.serve import Application

from actors.common import NAMESPACE, SERVE_APP, SUPERVISOR_NAME, actor_options
from actors.supervisor import SupervisorActor
from deployments.gateway import Gateway
from deployments.inference import PoseEstimator
from invispose.config import SiteConfig
from invispose.keys import first_admin_key
from invispose.security import jwt_secret
from invispose.service import stop_on_signals

logger = logging.getLogger(__name__)

QUIET = {"enable_access_log": False, "log_level": "WARNING"}
SHUTDOWN_S = 3.0
STOP_TIMEOUT_S = 3.0  # `up` waits this long for the supervisor to stop the routers


def build_app(site: SiteConfig) -> Application:
    """PoseEstimator (batched, autoscaling) bound into the Gateway ingress."""
    inference = site.serve.inference
    autoscaling = None
    if inference.max_replicas > inference.min_replicas:
        autoscaling = {
            "min_replicas": inference.min_replicas,
            "max_replicas": inference.max_replicas,
            "target_ongoing_requests": inference.max_batch_size,
        }
    estimator = PoseEstimator.options(
        num_replicas="auto" if autoscaling else inference.min_replicas,
        autoscaling_config=autoscaling,
        # fill whole batches: @serve.batch caps at max_ongoing_requests
        max_ongoing_requests=max(4 * inference.max_batch_size, 64),
        ray_actor_options={"num_cpus": inference.num_cpus, "num_gpus": inference.num_gpus},
        logging_config=QUIET,  # an access-log line per window costs more than it tells
        graceful_shutdown_timeout_s=SHUTDOWN_S,
        user_config={
            "max_batch_size": inference.max_batch_size,
            "batch_wait_timeout_s": inference.batch_wait_timeout_s,
        },
    ).bind(
        str(site.model.checkpoint), site.model.device, inference.torch_threads,
        site.model.estimator,
    )
    gateway = Gateway.options(
        num_replicas=site.serve.gateway_replicas,
        logging_config=QUIET,
        graceful_shutdown_timeout_s=SHUTDOWN_S,  # open WebSockets would hold it 20 s
    )
    return gateway.bind(site.model_dump(mode="json"), estimator)


def with_scene_epoch(site: SiteConfig, epoch_s: float | None = None) -> SiteConfig:
    """Give every simulated router without one the same scene clock origin."""
    epoch_s = time.time() if epoch_s is None else epoch_s
    data = site.model_dump(mode="json")
    for router in data["routers"]:
        if router["kind"] == "simulated" and router["source"].get("epoch_s") is None:
            router["source"]["epoch_s"] = epoch_s
    return SiteConfig.model_validate(data)


def with_jwt_secret(site: SiteConfig) -> SiteConfig:
    """Give the gateways the HS256 secret: configured, or the one kept beside the store
    (made on first start), so every replica verifies the same tokens across restarts."""
    if site.auth.algorithm != "HS256" or site.auth.jwt_secret is not None:
        return site
    secret = jwt_secret(site.auth, site.store.path.parent)
    return site.model_copy(update={"auth": site.auth.model_copy(update={"jwt_secret": secret})})


def warn_if_open(site: SiteConfig) -> bool:
    """Log a warning when the API needs no credential (loopback binds only); say if so."""
    if site.auth.enabled:
        return False
    logger.warning(
        "auth.enabled is false: every route is open to anyone who reaches %s:%d "
        "(allowed on a loopback address only)", site.serve.host, site.serve.port,
    )
    return True


def start_system(site: SiteConfig) -> Any:
    """Deploy the Serve app and start the supervisor (Ray must be initialised)."""
    site = with_jwt_secret(with_scene_epoch(site))
    warn_if_open(site)
    serve.start(http_options={"host": site.serve.host, "port": site.serve.port})
    serve.run(build_app(site), name=SERVE_APP, route_prefix="/")
    supervisor = SupervisorActor.options(
        **actor_options(SUPERVISOR_NAME), get_if_exists=True
    ).remote(site.model_dump(mode="json"))
    ray.get(supervisor.start.remote())
    return supervisor


def stop_system(supervisor: Any, timeout_s: float = 10.0) -> bool:
    """Announce the stop, flush the store, remove the app and every named actor.

    Returns False, having done nothing more, when the supervisor does not answer within
    ``timeout_s``: the cluster is going down already (a signal to the whole process group
    reaches Ray's own processes too), and every further call would only wait for the dead.
    """
    try:
        ray.get(supervisor.stop.remote(), timeout=timeout_s)
    except Exception as exc:
        logger.warning("supervisor stop failed (%s); the cluster is going down", exc)
        return False
    # routers first, so nothing calls the app while it is deleted
    for actor in ray.util.list_named_actors(all_namespaces=True):
        if actor.get("namespace") != NAMESPACE:
            continue
        try:  # actors owned by the supervisor die with it: some may be gone already
            ray.kill(ray.get_actor(actor["name"], namespace=NAMESPACE), no_restart=True)
        except ValueError:
            continue
    serve.delete(SERVE_APP, _blocking=True)
    return True


def run_forever(
    site: SiteConfig, address: str | None, stop: threading.Event | None = None
) -> None:
    """`invispose up`: start, print the URLs, run until Ctrl-C or SIGTERM, clean up.

    Start-up runs on a thread, so a signal is acted on at once even then: before the
    system is up, Ray is shut down under the half-made system (nothing is served or
    stored yet); after, the supervisor stops the routers, the store is flushed and the
    app removed, and then Ray goes. `invispose up` runs this in a session of its own
    (invispose.service): a signal to the caller's process group reaches only us, once.
    """
    stop = stop or threading.Event()
    stop_on_signals(stop)
    admin_key = first_admin_key(site.store.path) if site.auth.enabled else None
    try:
        ray.init(
            address=address or "local",
            namespace=NAMESPACE,
            include_dashboard=False,
            log_to_driver=False,
        )
    except SystemExit as exc:  # ray.init's own SIGTERM handler exits with the signal
        if exc.code != signal.SIGTERM:
            raise
        stop.set()
    stop_on_signals(stop)  # ray.init installed handlers of its own
    if stop.is_set():
        print("stopped while Ray started", flush=True)
        ray.shutdown()
        return
    started: list[Any] = []
    failed: list[BaseException] = []

    def start() -> None:
        try:
            started.append(start_system(site))
        except BaseException as exc:  # reported by the main thread
            failed.append(exc)
        finally:
            if not started:
                stop.set()

    starter = threading.Thread(target=start, name="invispose-start", daemon=True)
    starter.start()
    while not started and not stop.is_set():
        stop.wait(0.2)
    if started and not stop.is_set():
        base = f"http://{site.serve.host}:{site.serve.port}"
        print(f"InvisPose is up: {base}/  (API {base}/api/v1, docs {base}/docs)", flush=True)
        print(
            f"  live poses: {base}/api/v1/pose/current   stream: ws://"
            f"{site.serve.host}:{site.serve.port}/ws/v1/stream",
            flush=True,
        )
        if admin_key is not None:
            print(
                f"  first start: an admin API key was created; it is shown only now:\n"
                f"    {admin_key}\n"
                f"  e.g. curl -H 'Authorization: Bearer {admin_key}' {base}/api/v1/pose/current"
                f"\n  docs: {base}/docs?token={admin_key}"
                "\n  (more keys: `invispose keys create --scopes pose:read`; see README)",
                flush=True,
            )
        elif not site.auth.enabled:
            print("  auth is off (auth.enabled: false; loopback only)", flush=True)
        print("  Ctrl-C stops it.", flush=True)
        stop.wait()
    if failed:
        ray.shutdown()
        raise failed[0]
    if not started:
        print("stopping during start-up…", flush=True)
        ray.shutdown()  # the starter thread fails inside Ray; it is a daemon
        sys.stdout.flush()
        os._exit(0)  # its half-done calls must not hold the interpreter's exit
    print("stopping…", flush=True)
    if stop_system(started[0], timeout_s=STOP_TIMEOUT_S):
        serve.shutdown()
    ray.shutdown()
