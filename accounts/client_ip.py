"""The client's IP address, the one key every per-IP limit uses."""

from django.http import HttpRequest


def request_client_ip(request: HttpRequest) -> str:
    """The client IP of an HTTP request (daphne fills REMOTE_ADDR, from proxy headers if told)."""
    return request.META.get("REMOTE_ADDR") or "unknown"


def scope_client_ip(scope: dict) -> str:
    """The client IP of an ASGI scope."""
    client = scope.get("client")
    return str(client[0]) if client else "unknown"
