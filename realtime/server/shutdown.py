"""What a worker does last on SIGTERM, once its sockets are closed with 1001."""

import logging

from django.db import close_old_connections, connections

from realtime.cluster.workers import WORKER_ID, worker_retire_sync
from realtime.hub import hub
from realtime.protocol.codes import CloseCode
from realtime.registry.services import worker_sessions_close

logger = logging.getLogger("switchboard.realtime")


def worker_retire() -> None:
    """Record this worker's sessions closed (1001) and drop its heartbeat, so that nothing
    is left online; each step is tried even when the other fails."""
    try:
        close_old_connections()
        closed = worker_sessions_close(worker=WORKER_ID, code=int(CloseCode.GOING_AWAY))
        logger.warning(
            "shutting down: %d session(s) recorded closed with %d", closed, CloseCode.GOING_AWAY
        )
    except Exception:
        logger.exception("shutting down: could not record this worker's sessions closed")
    finally:
        connections.close_all()
    try:
        worker_retire_sync()
    except Exception:
        logger.exception("shutting down: could not drop this worker's heartbeat")


def worker_stop() -> None:
    """The worker's shutdown (daphne's SIGTERM hook, `realtime.server.daphne_adapter`):
    close its hub (`realtime.hub`: every task it runs cancelled, so that no heartbeat in
    flight re-registers the worker), then retire it. An ASGI lifespan shutdown would do the
    same, awaiting `hub().aclose()` on the loop instead."""
    hub().close()
    worker_retire()
