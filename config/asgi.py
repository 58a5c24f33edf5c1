"""ASGI entry point: `daphne config.asgi:application` (or uvicorn, granian: deploy/servers.py).
Composition only."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django_asgi_app = get_asgi_application()

# Imports below need the apps loaded.
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402

from config.root_path import RootPathPinned  # noqa: E402
from realtime.auth.middleware import JWTAuthMiddlewareStack  # noqa: E402
from realtime.edge.connect_rate import ConnectRateMiddleware  # noqa: E402
from realtime.edge.origin import OriginCheckMiddleware  # noqa: E402
from realtime.hub import Hub, hub_install  # noqa: E402
from realtime.routing import websocket_urlpatterns  # noqa: E402
from realtime.server import daphne_adapter  # noqa: E402
from realtime.server.lifespan import Lifespan  # noqa: E402
from realtime.server.shutdown import worker_stop  # noqa: E402
from realtime.server.startup import startup_log  # noqa: E402

hub_install(Hub())  # this worker's shared state, torn down by `worker_stop`
if settings.WS_DAPHNE_COMPAT:
    daphne_adapter.install(
        max_message_bytes=settings.WS_MAX_MESSAGE_BYTES,
        max_send_backlog=settings.WS_MAX_SEND_BACKLOG,
        control_frames_per_second=settings.WS_MESSAGES_PER_SECOND,
        control_frame_burst=settings.WS_MESSAGE_BURST,
        rate_abuse_window=settings.WS_RATE_ABUSE_WINDOW,
        on_shutdown=(worker_stop,),
    )
startup_log()

application = Lifespan(
    RootPathPinned(
        ProtocolTypeRouter(
            {
                "http": django_asgi_app,
                "websocket": OriginCheckMiddleware(
                    ConnectRateMiddleware(
                        # types-channels asks for its own pattern type; path() makes Django's.
                        JWTAuthMiddlewareStack(URLRouter(websocket_urlpatterns))  # type: ignore[arg-type]
                    )
                ),
            }
        )
    )
)
