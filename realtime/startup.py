"""What a worker says once when it starts."""

import logging

from django.conf import settings

logger = logging.getLogger("switchboard.realtime")


def startup_log() -> None:
    """Warn once when the channel layer cannot reach other workers."""
    backend = settings.CHANNEL_LAYERS["default"]["BACKEND"]
    if backend.endswith("InMemoryChannelLayer"):
        logger.warning(
            "REDIS_URL is not set: using the in-memory channel layer, so messages and "
            "revocations reach only this worker. Set REDIS_URL to run several workers."
        )
