"""WebSocket URL routes."""

from django.urls import path, re_path

from realtime.session.consumer import EchoConsumer, NotFoundConsumer, SessionConsumer

websocket_urlpatterns = [
    path("ws/echo/", EchoConsumer.as_asgi()),
    path("ws/session/", SessionConsumer.as_asgi()),
    re_path(r"", NotFoundConsumer.as_asgi()),
]
