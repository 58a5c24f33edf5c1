"""Operator endpoints: liveness, readiness and metrics (plain Django views, outside the API)."""

import ipaddress
import secrets

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET

from accounts.tokens import TokenRejected, user_for_token
from core.client_ip import request_client_ip
from operations.metrics import metrics_exposition
from operations.readiness import CHECKS, readiness


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """200 while the process serves; checks nothing else."""
    return JsonResponse({"status": "ok"})


@require_GET
async def readyz(request: HttpRequest) -> JsonResponse:
    """200 when the database and the channel layer answer within 1 s each, else 503; with a
    sharded layer the body also says which shards are down."""
    results = await readiness()
    ready = all(results[name] == "ok" for name in CHECKS)
    return JsonResponse(results, status=200 if ready else 503)


def _is_loopback(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip).is_loopback
    except ValueError:
        return False


def metrics_access(request: HttpRequest) -> int | None:
    """None when the caller may read metrics, else the HTTP status to refuse with.

    With METRICS_TOKEN: that token, or a staff user's JWT. Without it: loopback clients
    only when DEBUG is off; with DEBUG on, loopback clients or a staff user's JWT.
    """
    loopback = _is_loopback(request_client_ip(request))
    if not settings.METRICS_TOKEN and not settings.DEBUG:
        return None if loopback else 403
    header = request.headers.get("Authorization", "")
    scheme, _, credential = header.partition(" ")
    if not header:
        return None if loopback and not settings.METRICS_TOKEN else 401
    if scheme.lower() != "bearer" or not credential:
        return 401
    expected = settings.METRICS_TOKEN
    if expected and secrets.compare_digest(credential.encode(), expected.encode()):
        return None
    try:
        user = user_for_token(credential).user
    except TokenRejected:
        return 401
    except DatabaseError:
        return 503
    return None if user.is_staff else 403


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus text format (METRICS_TOKEN, a staff JWT, or loopback; see docs/OPERATIONS.md)."""
    refused = metrics_access(request)
    if refused is not None:
        refusal = (
            {"detail": "Temporarily unavailable; try again later.", "code": "unavailable"}
            if refused == 503
            else {"detail": "Metrics need a valid bearer token.", "code": "metrics_forbidden"}
        )
        response = JsonResponse(refusal, status=refused)
        if refused == 401:
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    body, content_type = metrics_exposition()
    return HttpResponse(body, content_type=content_type)
