"""The gateway replica's own WebSocket server: /ws/v1/stream on ``serve.stream_port``.

Through Serve's HTTP proxy every WebSocket message is an ASGI message that the replica
streams to the proxy process, which then writes it to the socket: with 100 clients at 20
frames/s that costs the two processes about 0.45 ms of CPU per message, more than the
model. This server speaks the same protocol (the same route and ``ClientSession``s) from
the replica itself: a uvicorn server on a thread of its own with its own event loop, its
own bus subscription and client registry. ``/ws/v1/stream`` on the main port (through the
proxy) stays for clients that can reach only that port. Replicas on one machine share the
port (SO_REUSEPORT: the kernel spreads connections across them); uvicorn enforces the
message size (``ws_max_size``) before a message is read whole.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from typing import Any

import uvicorn
from fastapi import FastAPI

from actors.store import ActorStore
from deployments.api import stream
from deployments.api.auth import GatewaySecurity, limits_take
from deployments.api.state import GatewayState
from invispose.config import SiteConfig

logger = logging.getLogger(__name__)

def listen_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket that other processes on this machine may bind as well."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if hasattr(socket, "SO_REUSEPORT"):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


class StreamServer:
    """Runs /ws/v1/stream on its own thread and loop until ``stop``."""

    def __init__(self, site: SiteConfig, port: int) -> None:
        self.site = site
        self.port = port
        self.error: str | None = None  # why it is not serving, if it is not
        self.started = threading.Event()  # listening, or failed (see ``error``)
        self._server: uvicorn.Server | None = None
        self.state: GatewayState | None = None  # set once serving
        self._thread = threading.Thread(target=self._run, name="invispose-stream", daemon=True)

    def start(self) -> None:
        """Bind and serve in the background."""
        self._thread.start()

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except Exception as exc:  # the proxied route still serves; say why this one does not
            self.error = f"{type(exc).__name__}: {exc}"
            logger.error("gateway: stream server on port %d failed: %s", self.port, exc)
        finally:
            self.started.set()

    async def _serve(self) -> None:
        state = self.state = GatewayState(self.site)
        stream.ClientRegistry(state)
        # its own key ring and limiters: asyncio objects stay on the loop that uses them
        replicas = self.site.serve.gateway_replicas
        state.security = GatewaySecurity(
            self.site, self.site.auth.jwt_secret, ActorStore(lambda: state.store),
            share=replicas, take=limits_take() if replicas > 1 else None,
        )
        app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
        app.include_router(stream.router)
        app.state.gateway = state  # the route's state here (not the Serve replica's)
        sock = listen_socket(self.site.serve.host, self.port)
        config = uvicorn.Config(
            app,
            lifespan="off",
            access_log=False,
            log_level="warning",
            ws_max_size=self.site.serve.websocket.max_message_bytes,
            ws_ping_interval=20.0,
            ws_ping_timeout=20.0,
        )
        self._server = uvicorn.Server(config)
        state.ensure_pump()  # frames flow before the first client connects
        self.started.set()
        try:
            await self._server.serve(sockets=[sock])
        finally:
            state.stop()
            sock.close()

    def stop(self) -> None:
        """Ask the server to close its connections and end."""
        if self._server is not None:
            self._server.should_exit = True

    def stats(self) -> dict[str, Any]:
        """Where it listens, whether it serves, and its clients' counters."""
        clients = self.state.clients.stats() if self.state is not None else {}
        return {"port": self.port, "serving": self.error is None, "error": self.error,
                **clients}
