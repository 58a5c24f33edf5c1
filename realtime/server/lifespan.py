"""The ASGI lifespan protocol: a worker's startup and shutdown on servers that run it
(uvicorn, granian; daphne has none, and its adapter runs the same shutdown on SIGTERM).

Startup starts the worker's heartbeat, so that the other workers count this one's sessions
from the first (when Redis cannot answer yet, the first session starts it instead). Shutdown
is `realtime.server.shutdown.worker_ashutdown`. A failing step is logged and the rest still
run: the server is told `shutdown.complete` either way, so that it exits.
"""

import logging

from core.asgi_types import ASGIApp, Receive, Scope, Send
from realtime.hub import hub
from realtime.server.shutdown import worker_ashutdown

logger = logging.getLogger("switchboard.realtime")


async def worker_astart() -> None:
    """The lifespan's startup."""
    try:
        await hub().heartbeat.ensure()
    except Exception as e:  # the layer-health log says when Redis cannot answer
        logger.warning(
            "starting: no heartbeat yet (%s); the first session starts it", type(e).__name__
        )


class Lifespan:
    """ASGI middleware that answers the `lifespan` scope and passes every other one on."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await worker_astart()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                try:
                    await worker_ashutdown()
                except Exception:
                    logger.exception("shutting down: the lifespan shutdown failed")
                await send({"type": "lifespan.shutdown.complete"})
                return
