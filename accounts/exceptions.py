"""REST exceptions of our own (importable from authentication, which DRF's views import)."""

from rest_framework import exceptions, status


class ServiceUnavailable(exceptions.APIException):
    """A backing service (Redis, say) cannot answer now: 503 `unavailable`, as for the
    database."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "Temporarily unavailable; try again later."
    default_code = "unavailable"
