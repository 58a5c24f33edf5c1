"""Bad access tokens, each with the error it must produce at both doors (REST and WebSocket).

A case builds its raw token from a saved user (it may change that user, as an attack would
need); `reason` is what `TokenRejected.reason` says in the logs, `code` what clients see.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from cryptography.hazmat.primitives.asymmetric import rsa
from django.conf import settings

from accounts.models import User
from accounts.services import user_revoke_tokens
from tests.conftest import (
    access_for,
    forge,
    hmac_signed_with_header,
    refresh_for,
    signature_broken,
    valid_claims,
)


@dataclass(frozen=True)
class BadToken:
    id: str
    build: Callable[[User], str]
    reason: str
    code: str = "unauthorized"


def _rsa_signed(user: User) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return forge(valid_claims(user), key=key, algorithm="RS256")


def _expired_with_bad_signature(user: User) -> str:
    return signature_broken(str(access_for(user, lifetime=timedelta(seconds=-10))))


def _inactive(user: User) -> str:
    raw = str(access_for(user))
    user.is_active = False
    user.save()
    return raw


def _revoked(user: User) -> str:
    raw = str(access_for(user))
    user_revoke_tokens(user=user, reason="test")
    return raw


def _oversized(user: User) -> str:
    return str(access_for(user, padding="x" * settings.JWT_MAX_TOKEN_BYTES))


def _nested(depth: int) -> dict:
    """{"x": {"x": … {}}} `depth` levels deep."""
    value: dict = {}
    for _ in range(depth):
        value = {"x": value}
    return value


BAD_TOKENS = [
    BadToken("garbage", lambda u: "not-a-jwt", "malformed header"),
    BadToken(
        "forged_signature",
        lambda u: forge(valid_claims(u), key="a-guessed-key-that-is-long-enough-for-hs256"),
        "Token is invalid",
    ),
    BadToken(
        "broken_signature", lambda u: signature_broken(str(access_for(u))), "Token is invalid"
    ),
    BadToken(
        "alg_none", lambda u: forge(valid_claims(u), key="", algorithm="none"), "Token is invalid"
    ),
    BadToken("rs256_signed_with_an_rsa_key", _rsa_signed, "Token is invalid"),
    BadToken(
        "rs256_header_hmac_signed_with_our_key",
        lambda u: hmac_signed_with_header({"alg": "RS256", "typ": "JWT"}, valid_claims(u)),
        "Token is invalid",
    ),
    BadToken("refresh_used_as_access", lambda u: str(refresh_for(u)), "Token has wrong type"),
    BadToken(
        "missing_type", lambda u: forge(valid_claims(u, token_type=None)), "Token has no type"
    ),
    BadToken("missing_exp", lambda u: forge(valid_claims(u, exp=None)), "Token has no 'exp' claim"),
    BadToken(
        "past_exp",
        lambda u: str(access_for(u, lifetime=timedelta(seconds=-10))),
        "token expired",
        "token_expired",
    ),
    BadToken("past_exp_with_bad_signature", _expired_with_bad_signature, "Token is invalid"),
    BadToken(
        "infinite_exp", lambda u: forge(valid_claims(u, exp=float("inf"))), "Token is invalid"
    ),
    BadToken("absurd_exp", lambda u: forge(valid_claims(u, exp=10**20)), "malformed claims"),
    BadToken("string_exp", lambda u: forge(valid_claims(u, exp="9999999999")), "malformed claims"),
    BadToken(
        "deep_header",
        lambda u: forge(valid_claims(u), headers={"nest": _nested(20)}),
        "unexpected token header",
    ),
    BadToken(
        "unknown_header_field",
        lambda u: forge(valid_claims(u), headers={"jku": "https://evil.example/keys"}),
        "unexpected token header",
    ),
    BadToken(
        "future_iat",
        lambda u: forge(valid_claims(u, iat=int(time.time()) + 3600)),
        "Token is invalid",
    ),
    BadToken("missing_jti", lambda u: forge(valid_claims(u, jti=None)), "Token has no id"),
    BadToken("missing_iss", lambda u: forge(valid_claims(u, iss=None)), "Token is invalid"),
    BadToken("wrong_iss", lambda u: forge(valid_claims(u, iss="elsewhere")), "Token is invalid"),
    BadToken("missing_aud", lambda u: forge(valid_claims(u, aud=None)), "Token is invalid"),
    BadToken("wrong_aud", lambda u: forge(valid_claims(u, aud="elsewhere")), "Token is invalid"),
    BadToken(
        "unknown_user", lambda u: forge(valid_claims(u, user_id=str(u.pk + 1000))), "unknown user"
    ),
    BadToken("inactive_user", _inactive, "inactive user"),
    BadToken("revoked_by_logout_all", _revoked, "token revoked"),
    BadToken("missing_version_claim", lambda u: forge(valid_claims(u, ver=None)), "token revoked"),
    BadToken("oversized", _oversized, "token too long"),
    BadToken(
        "user_id_missing", lambda u: forge(valid_claims(u, user_id=None)), "malformed user id"
    ),
    BadToken(
        "user_id_object",
        lambda u: forge(valid_claims(u, user_id={"id": u.pk})),
        "malformed user id",
    ),
    BadToken("user_id_list", lambda u: forge(valid_claims(u, user_id=[u.pk])), "malformed user id"),
    BadToken(
        "user_id_garbage", lambda u: forge(valid_claims(u, user_id="1 OR 1=1")), "malformed user id"
    ),
    BadToken("user_id_zero", lambda u: forge(valid_claims(u, user_id="0")), "malformed user id"),
    BadToken(
        "user_id_negative",
        lambda u: forge(valid_claims(u, user_id=str(-u.pk))),
        "malformed user id",
    ),
    BadToken(
        "user_id_too_big", lambda u: forge(valid_claims(u, user_id=str(2**64))), "malformed user id"
    ),
    BadToken("user_id_true", lambda u: forge(valid_claims(u, user_id=True)), "malformed user id"),
    BadToken(
        "user_id_float",
        lambda u: forge(valid_claims(u, user_id=float(u.pk))),
        "malformed user id",
    ),
    BadToken(
        "user_id_decimal_string",
        lambda u: forge(valid_claims(u, user_id=f"{u.pk}.0")),
        "malformed user id",
    ),
    BadToken(
        "user_id_unicode_digits",
        lambda u: forge(valid_claims(u, user_id="\u0661")),  # ARABIC-INDIC DIGIT ONE
        "malformed user id",
    ),
]
