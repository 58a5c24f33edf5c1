"""WebSocket URL routes."""

from django.urls import path, re_path

from realtime.session.consumer import SessionConsumer
from realtime.session.echo import EchoConsumer, NotFoundConsumer

websocket_urlpatterns = [
    path("ws/echo/", EchoConsumer.as_asgi()),
    path("ws/session/", SessionConsumer.as_asgi()),
    re_path(r"", NotFoundConsumer.as_asgi()),
]
