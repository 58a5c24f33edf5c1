"""JWT keys with rotation: the current key signs, and its id goes into each token's `kid`
header; the previous keys (JWT_PREVIOUS_SIGNING_KEYS, or JWT_PREVIOUS_PUBLIC_KEY_FILES for
RS256/ES256) still verify until they are removed, so a rotation logs nobody out.

A token without `kid` (issued before rotation existed) is tried against each key in turn.
"""

import hashlib
from functools import cache, cached_property
from typing import Any

import jwt
from django.conf import settings
from rest_framework_simplejwt.backends import TokenBackend
from rest_framework_simplejwt.exceptions import TokenBackendError, TokenBackendExpiredToken


def key_id(key: str) -> str:
    """A short, stable id of a key: the first 16 hex digits of its SHA-256 (for an HS key of
    32+ random bytes this reveals nothing usable; for a key pair it is the public key's)."""
    return hashlib.sha256(key.encode()).hexdigest()[:16]


class RotatingTokenBackend(TokenBackend):
    """simplejwt's backend, signing with a `kid` and verifying with any configured key."""

    def __init__(self, *args: Any, previous_keys: tuple[str, ...] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.previous_keys = previous_keys

    @property
    def _verifying_key_text(self) -> str:
        # simplejwt types the verifying key optional; config/settings.py always sets a text.
        return self.signing_key if self.algorithm.startswith("HS") else self.verifying_key  # type: ignore[return-value]

    @cached_property
    def current_kid(self) -> str:
        return key_id(self._verifying_key_text)

    @cached_property
    def verifying_keys(self) -> dict[str, Any]:
        """{kid: prepared key}, the current key first."""
        keys = [self._verifying_key_text, *self.previous_keys]
        return {key_id(key): self._prepare_key(key) for key in keys}

    def encode(self, payload: dict[str, Any]) -> str:
        claims = payload.copy()
        if self.audience is not None:
            claims["aud"] = self.audience
        if self.issuer is not None:
            claims["iss"] = self.issuer
        return jwt.encode(
            claims,
            self.prepared_signing_key,
            algorithm=self.algorithm,
            headers={"kid": self.current_kid},
            json_encoder=self.json_encoder,
        )

    # simplejwt annotates the encoded token as a Token object; it is the text.
    def decode(self, token: str | bytes, verify: bool = True) -> dict[str, Any]:  # type: ignore[override]
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.InvalidTokenError as e:
            raise TokenBackendError("Token is invalid") from e
        if kid is None:
            candidates = list(self.verifying_keys.values())
        elif kid in self.verifying_keys:
            candidates = [self.verifying_keys[kid]]
        else:
            raise TokenBackendError("Token is invalid")
        for index, key in enumerate(candidates):
            try:
                return jwt.decode(
                    token,
                    key,
                    algorithms=[self.algorithm],
                    audience=self.audience,
                    issuer=self.issuer,
                    leeway=self.get_leeway(),
                    options={"verify_aud": self.audience is not None, "verify_signature": verify},
                )
            except jwt.InvalidSignatureError as e:
                if index == len(candidates) - 1:
                    raise TokenBackendError("Token is invalid") from e
            except jwt.InvalidAlgorithmError as e:
                raise TokenBackendError("Invalid algorithm specified") from e
            except jwt.ExpiredSignatureError as e:
                raise TokenBackendExpiredToken("Token is expired") from e
            except jwt.InvalidTokenError as e:
                raise TokenBackendError("Token is invalid") from e
        raise TokenBackendError("Token is invalid")


@cache
def token_backend() -> RotatingTokenBackend:
    """The process's token backend, from SIMPLE_JWT and JWT_PREVIOUS_KEYS."""
    jwt_settings = settings.SIMPLE_JWT
    return RotatingTokenBackend(
        jwt_settings["ALGORITHM"],
        jwt_settings["SIGNING_KEY"],
        jwt_settings.get("VERIFYING_KEY", ""),
        jwt_settings.get("AUDIENCE"),
        jwt_settings.get("ISSUER"),
        None,
        jwt_settings.get("LEEWAY", 0),
        previous_keys=settings.JWT_PREVIOUS_KEYS,
    )
