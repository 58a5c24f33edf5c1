"""`manage.py check --deploy`: what a production Switchboard must not run with.

Each check has an id, a message naming what is wrong and a hint naming the fix; docs/DEPLOYMENT.md's
production checklist lists them.
"""

from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig, apps
from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.utils.module_loading import import_string


def _in_memory_layer() -> list[CheckMessage]:
    backend = settings.CHANNEL_LAYERS["default"]["BACKEND"]
    if settings.DEBUG or not backend.endswith("InMemoryChannelLayer"):
        return []
    return [
        Warning(
            "The in-memory channel layer is in use with DEBUG off: revocations, disconnects "
            "and room messages reach only the worker they were sent on.",
            hint="Set REDIS_URL (every worker the same).",
            id="switchboard.W001",
        )
    ]


def _origin_checked(app: object, depth: int = 0) -> bool:
    """Whether the ASGI app `app` passes through an origin check before anything else routes."""
    from channels.routing import URLRouter
    from channels.security.websocket import OriginValidator

    from realtime.edge.origin import OriginCheckMiddleware

    if isinstance(app, OriginCheckMiddleware | OriginValidator):
        return True
    if isinstance(app, URLRouter) or depth > 10:
        return False
    inner = getattr(app, "inner", None) or getattr(app, "application", None)
    return inner is not None and _origin_checked(inner, depth + 1)


def _websocket_origin() -> list[CheckMessage]:
    application = import_string(settings.ASGI_APPLICATION)
    mapping = getattr(getattr(application, "inner", application), "application_mapping", {})
    websocket = mapping.get("websocket")
    if websocket is None or _origin_checked(websocket):
        return []
    return [
        Error(
            "The WebSocket routes are not behind an origin check: any web page a user visits "
            "can open a socket with the user's credentials (cross-site WebSocket hijacking).",
            hint="Wrap the websocket router in realtime.edge.origin.OriginCheckMiddleware "
            "(config/asgi.py).",
            id="switchboard.E002",
        )
    ]


def _signing_key() -> list[CheckMessage]:
    key = settings.SIMPLE_JWT["SIGNING_KEY"]
    if (
        settings.SIMPLE_JWT.get("ALGORITHM", "HS256").startswith("HS")
        and key == settings.SECRET_KEY
    ):
        return [
            Warning(
                "JWT_SIGNING_KEY is DJANGO_SECRET_KEY: rotating one rotates the other, and a "
                "leak of either forges tokens and sessions alike.",
                hint="Set JWT_SIGNING_KEY to its own random value of 32 bytes or more.",
                id="switchboard.W003",
            )
        ]
    return []


def _rotation_blacklist() -> list[CheckMessage]:
    jwt = settings.SIMPLE_JWT
    if not jwt.get("ROTATE_REFRESH_TOKENS"):
        return []
    if jwt.get("BLACKLIST_AFTER_ROTATION") and apps.is_installed(
        "rest_framework_simplejwt.token_blacklist"
    ):
        return []
    return [
        Error(
            "Refresh tokens rotate but used ones are not blacklisted: a stolen refresh token "
            "keeps working after its owner has refreshed.",
            hint="Set BLACKLIST_AFTER_ROTATION and install "
            "'rest_framework_simplejwt.token_blacklist'.",
            id="switchboard.E004",
        )
    ]


def _group_expiry() -> list[CheckMessage]:
    config = settings.CHANNEL_LAYERS["default"].get("CONFIG", {})
    expiry = config.get("group_expiry")
    if expiry is None or expiry >= settings.DAPHNE_WEBSOCKET_TIMEOUT:
        return []
    return [
        Warning(
            f"channels-redis forgets group members after {expiry} s, before daphne closes "
            f"idle WebSockets ({settings.DAPHNE_WEBSOCKET_TIMEOUT} s): a session that never "
            "refreshes would stop receiving revocations and room messages.",
            hint="Raise group_expiry (CHANNEL_GROUP_EXPIRY) or daphne's --websocket_timeout "
            "(and DAPHNE_WEBSOCKET_TIMEOUT with it).",
            id="switchboard.W005",
        )
    ]


def _layer_agreement() -> list[CheckMessage]:
    """Every alive worker's channel layer is this configuration's (REDIS_LAYER_URLS)."""
    if not settings.REDIS_URL:
        return []
    from realtime.cluster.workers import layer_fingerprint, layer_fingerprints_sync

    try:
        fingerprints = layer_fingerprints_sync()
    except Exception as e:  # Redis unreachable from here: other checks and /readyz say so
        return [
            Warning(
                f"could not read the workers' heartbeats from Redis ({type(e).__name__}), so "
                "whether every worker uses this REDIS_LAYER_URLS is unknown.",
                id="switchboard.W008",
            )
        ]
    mine = layer_fingerprint()
    others = sorted(worker for worker, theirs in fingerprints.items() if theirs != mine)
    if not others:
        return []
    return [
        Error(
            f"{len(others)} running worker(s) use a different channel layer than this "
            f"configuration ({', '.join(others[:5])}): channels-redis would send their "
            "messages to different servers, and they would be lost.",
            hint="Give every worker the same REDIS_LAYER_URLS, in the same order (and the same "
            "REDIS_URL or REDIS_SENTINELS), then restart the ones that differ.",
            id="switchboard.E007",
        )
    ]


def _open_registration() -> list[CheckMessage]:
    if settings.DEBUG or not settings.ACCOUNTS_ALLOW_REGISTRATION:
        return []
    return [
        Warning(
            "Anyone may register (POST /api/auth/register/) with DEBUG off.",
            hint="Set ACCOUNTS_ALLOW_REGISTRATION=0 unless open sign-up is intended.",
            id="switchboard.W006",
        )
    ]


@register(Tags.security, deploy=True)
def switchboard_deploy_checks(
    app_configs: Sequence[AppConfig] | None, **kwargs: Any
) -> list[CheckMessage]:
    """Every Switchboard deploy check (DEBUG-off dangers)."""
    return [
        *_in_memory_layer(),
        *_websocket_origin(),
        *_signing_key(),
        *_rotation_blacklist(),
        *_group_expiry(),
        *_layer_agreement(),
        *_open_registration(),
    ]
