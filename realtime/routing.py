"""WebSocket URL routes."""

from django.urls import path, re_path

from realtime.session.consumer import SessionConsumer
from realtime.session.echo import EchoConsumer, NotFoundConsumer

# channels routes ASGI applications with Django's path(), which django-stubs types for views.
websocket_urlpatterns = [
    path("ws/echo/", EchoConsumer.as_asgi()),  # type: ignore[arg-type]
    path("ws/session/", SessionConsumer.as_asgi()),  # type: ignore[arg-type]
    re_path(r"", NotFoundConsumer.as_asgi()),  # type: ignore[arg-type]
]
