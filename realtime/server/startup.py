"""What a worker says once when it starts."""

import logging

from django.conf import settings

logger = logging.getLogger("switchboard.realtime")


def startup_log() -> None:
    """Say once which channel layer this worker uses when it cannot reach other workers: a
    fact in development (DEBUG on: `make run` is one worker), a warning otherwise."""
    backend = str(settings.CHANNEL_LAYERS["default"]["BACKEND"])
    if not backend.endswith("InMemoryChannelLayer"):
        return
    if settings.DEBUG:
        logger.info(
            "using the in-memory channel layer: one worker "
            "(set REDIS_URL to run several behind one Redis)."
        )
    else:
        logger.warning(
            "REDIS_URL is not set: using the in-memory channel layer, so messages and "
            "revocations reach only this worker. Set REDIS_URL to run several workers."
        )
