"""OpenAPI pieces for drf-spectacular: the bearer scheme and the error bodies."""

from drf_spectacular.contrib.rest_framework_simplejwt import SimpleJWTScheme
from drf_spectacular.utils import OpenApiResponse


# drf-spectacular leaves OpenApiAuthenticationExtension.__init_subclass__ unannotated.
class VersionedJWTScheme(SimpleJWTScheme):  # type: ignore[no-untyped-call]
    target_class = "accounts.authentication.VersionedJWTAuthentication"
    name = "jwtAuth"


ERROR = {
    "type": "object",
    "properties": {"detail": {"type": "string"}, "code": {"type": "string"}},
    "required": ["detail", "code"],
}
FIELD_ERRORS = {
    "type": "object",
    "description": "DRF's per-field errors: each invalid field with its messages.",
    "additionalProperties": {"type": "array", "items": {"type": "string"}},
}


def error(description: str) -> OpenApiResponse:
    """A `{"detail", "code"}` error response."""
    return OpenApiResponse(response=ERROR, description=description)


BAD_REQUEST = OpenApiResponse(
    response={"anyOf": [FIELD_ERRORS, ERROR]},
    description="Invalid body: per-field errors, or malformed JSON (`parse_error`, also for JSON "
    "nested too deeply) / wrong content type (`unsupported_media_type`).",
)
UNAUTHORIZED = error("Missing, invalid, expired or revoked token (`code` says which).")

UNAVAILABLE = error("The database cannot answer now (`unavailable`); see Retry-After.")
