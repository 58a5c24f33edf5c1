"""One JSON error shape for the REST API: `{"detail": …, "code": …}` or per-field errors."""

import logging
from typing import Any

from django.db import DatabaseError
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler, set_rollback

from accounts.exceptions import ServiceUnavailable

logger = logging.getLogger("switchboard.api")


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    """DRF's handler, plus: 400 for a wrong content type, a `code` on every error, 503 when
    the database fails, and JSON 500s."""
    if isinstance(exc, exceptions.UnsupportedMediaType):
        exc = exceptions.ParseError(
            f"Content-Type must be application/json, not {exc.args[0]!r}"[:200],
            code="unsupported_media_type",
        )
    if isinstance(exc, DatabaseError | ServiceUnavailable):
        what = "database" if isinstance(exc, DatabaseError) else "a backing service"
        logger.error("%s unavailable in %s: %s", what, context["view"].__class__.__name__, exc)
        set_rollback()
        return Response(
            {"detail": "Temporarily unavailable; try again later.", "code": "unavailable"},
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": "5"},
        )
    response = exception_handler(exc, context)
    if response is None:
        logger.exception("unhandled error in %s", context["view"].__class__.__name__)
        set_rollback()
        return Response(
            {"detail": "Internal server error", "code": "internal_error"},
            status=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )
    if isinstance(response.data, dict) and set(response.data) == {"detail"}:
        codes = exc.get_codes() if isinstance(exc, exceptions.APIException) else None
        response.data["code"] = codes if isinstance(codes, str) else "error"
    return response
