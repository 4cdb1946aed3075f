"""Gateway: the FastAPI ingress (REST under /api/v1, WebSocket /ws/v1/stream, /docs)."""

from __future__ import annotations

import logging
import urllib.parse
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from ray import serve
from starlette.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

from actors.common import GATEWAY_DEPLOYMENT
from actors.store import ActorStore
from deployments.api import alerts, auth, events, metrics, pose, stream, system, webhooks
from deployments.api.auth import (
    GatewaySecurity,
    authorize,
    gateway_security,
    limits_take,
)
from deployments.api.middleware import ApiMiddleware
from deployments.api.problems import install_problem_handlers
from deployments.api.state import GatewayState, get_state, install
from deployments.stream_server import StreamServer
from invispose import __version__
from invispose.config import SiteConfig
from invispose.security import SYSTEM_READ

logger = logging.getLogger(__name__)

STREAM_START_S = 10.0  # the replica waits this long for its stream server to listen

app = FastAPI(
    title="InvisPose API",
    version=__version__,
    description="Privacy-preserving human pose estimation using WiFi signals. Every route "
    "but `/api/v1/system/health` needs a credential: `Authorization: Bearer <JWT or API "
    "key>`; each lists the scope it needs.",
    docs_url=None,  # served below from local assets: /docs works with no internet access
    redoc_url=None,
    openapi_url=None,  # served below, to credentials only
)
app.mount("/docs/assets", StaticFiles(directory=swagger_ui_path), name="swagger-ui")
app.add_middleware(ApiMiddleware, observe=metrics.observe_request)
install_problem_handlers(app)


async def _docs_enabled(request: Request) -> None:
    if not gateway_security(request).site.api.docs:
        raise HTTPException(status_code=404, detail="API documentation is off (api.docs)")


@app.get("/openapi.json", include_in_schema=False,
         dependencies=[Depends(_docs_enabled), authorize()])
async def openapi_document() -> JSONResponse:
    """The OpenAPI document (any valid credential)."""
    return JSONResponse(app.openapi())


@app.get("/docs", include_in_schema=False, dependencies=[Depends(_docs_enabled), authorize()])
async def swagger_ui(request: Request) -> HTMLResponse:
    """Swagger UI for the OpenAPI document, its scripts and styles from this server.

    Browsers cannot add a header to a link: ``/docs?token=<credential>`` works too, and
    the page then fetches the document with the same credential.
    """
    token = request.query_params.get("token")
    spec = "/openapi.json" + (f"?{urllib.parse.urlencode({'token': token})}" if token else "")
    return get_swagger_ui_html(
        openapi_url=spec,
        title=f"{app.title} - docs",
        swagger_js_url="/docs/assets/swagger-ui-bundle.js",
        swagger_css_url="/docs/assets/swagger-ui.css",
        swagger_favicon_url="/docs/assets/favicon-32x32.png",
    )


METRICS_DOC = {200: {"description": "Prometheus text exposition",
                     "content": {"text/plain": {"schema": {"type": "string"}}}}}


@app.get("/metrics", tags=["system"], response_class=Response, responses=METRICS_DOC,
         dependencies=[authorize(SYSTEM_READ)])
async def prometheus_metrics(state: GatewayState = Depends(get_state)) -> Response:
    """API and pipeline metrics in Prometheus text format."""
    return Response(await metrics.scrape(state), media_type=metrics.CONTENT_TYPE)


app.include_router(pose.router)
app.include_router(system.router)
app.include_router(auth.router)
app.include_router(webhooks.router)
app.include_router(events.router)
app.include_router(alerts.router)
app.include_router(stream.router)


LANDING = """<!doctype html><html><head><meta charset="utf-8"><title>InvisPose</title></head>
<body><h1>InvisPose</h1><ul>
<li><a href="/api/v1/pose/current">/api/v1/pose/current</a></li>
<li><a href="/api/v1/system/status">/api/v1/system/status</a></li>
<li><a href="/api/v1/system/routers">/api/v1/system/routers</a></li>
<li><a href="/api/v1/system/performance">/api/v1/system/performance</a></li>
<li>WebSocket: <code>/ws/v1/stream</code></li>
<li><a href="/docs">OpenAPI documentation</a></li></ul></body></html>"""


@app.get("/", response_class=HTMLResponse, include_in_schema=False)
async def landing() -> str:
    """A page of links (the dashboard replaces it)."""
    return LANDING


@serve.deployment(
    name=GATEWAY_DEPLOYMENT, max_ongoing_requests=10_000, ray_actor_options={"num_cpus": 0}
)
@serve.ingress(app)
class Gateway:
    """Holds the replica's GatewayState; the routes live in deployments/api/."""

    def __init__(self, site: dict[str, Any], estimator: Any) -> None:
        config = SiteConfig.model_validate(site)
        self.state = GatewayState(config)
        self.state.estimator = estimator
        state = self.state
        replicas = config.serve.gateway_replicas
        self.state.security = GatewaySecurity(
            config, config.auth.jwt_secret, ActorStore(lambda: state.store), share=replicas,
            take=limits_take() if replicas > 1 else None,
        )
        stream.ClientRegistry(self.state)
        install(self.state)
        self.stream_server: StreamServer | None = None
        port = config.serve.stream_port_resolved
        if port is not None:
            self.stream_server = StreamServer(config, port)
            self.stream_server.start()
            self.stream_server.started.wait(STREAM_START_S)
        self.state.stream_server = self.stream_server

    def __del__(self) -> None:
        self.state.stop()
        if self.stream_server is not None:
            self.stream_server.stop()
