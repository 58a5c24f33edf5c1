"""accounts.jwt_keys: tokens carry the signing key's id; previous keys verify until removed."""

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from rest_framework_simplejwt.exceptions import TokenBackendError

from accounts.jwt_keys import RotatingTokenBackend, key_id

OLD = "o" * 40
NEW = "n" * 40
CLAIMS = {"user_id": "1", "token_type": "access", "exp": 4_000_000_000}


def backend(signing: str, *previous: str, algorithm: str = "HS256", verifying: str = ""):
    return RotatingTokenBackend(
        algorithm,
        signing,
        verifying,
        "switchboard",
        "switchboard",
        None,
        0,
        previous_keys=previous,
    )


def test_a_token_names_its_signing_key_in_kid():
    token = backend(NEW).encode(CLAIMS)

    assert jwt.get_unverified_header(token) == {"alg": "HS256", "typ": "JWT", "kid": key_id(NEW)}


def test_after_a_rotation_tokens_of_the_previous_key_still_verify():
    issued_before = backend(OLD).encode(CLAIMS)

    assert backend(NEW, OLD).decode(issued_before)["user_id"] == "1"


def test_once_the_previous_key_is_removed_its_tokens_are_refused():
    issued_before = backend(OLD).encode(CLAIMS)

    with pytest.raises(TokenBackendError, match="Token is invalid"):
        backend(NEW).decode(issued_before)


def test_a_token_without_kid_is_tried_against_every_key():
    legacy = jwt.encode({**CLAIMS, "aud": "switchboard", "iss": "switchboard"}, OLD)

    assert backend(NEW, OLD).decode(legacy)["user_id"] == "1"
    with pytest.raises(TokenBackendError):
        backend(NEW).decode(legacy)


def test_a_kid_naming_no_configured_key_is_refused_without_trying_any():
    forged = jwt.encode(
        {**CLAIMS, "aud": "switchboard", "iss": "switchboard"}, NEW, headers={"kid": "unknown"}
    )

    with pytest.raises(TokenBackendError, match="Token is invalid"):
        backend(NEW).decode(forged)


def test_a_kid_of_the_previous_key_with_the_new_keys_signature_is_refused():
    # The kid picks exactly one key: a token cannot name one key and be signed by another.
    forged = jwt.encode(
        {**CLAIMS, "aud": "switchboard", "iss": "switchboard"}, NEW, headers={"kid": key_id(OLD)}
    )

    with pytest.raises(TokenBackendError):
        backend(NEW, OLD).decode(forged)


def pem_pair(private_key) -> tuple[str, str]:
    private = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        private_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


@pytest.mark.parametrize(
    ("algorithm", "make_key"),
    [
        ("RS256", lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)),
        ("ES256", lambda: ec.generate_private_key(ec.SECP256R1())),
    ],
)
def test_key_pairs_sign_with_the_private_key_and_rotate_public_keys(algorithm, make_key):
    old_private, old_public = pem_pair(make_key())
    new_private, new_public = pem_pair(make_key())
    issued_before = backend(old_private, algorithm=algorithm, verifying=old_public).encode(CLAIMS)
    rotated = backend(new_private, old_public, algorithm=algorithm, verifying=new_public)

    assert rotated.decode(rotated.encode(CLAIMS))["user_id"] == "1"
    assert rotated.decode(issued_before)["user_id"] == "1"
    assert jwt.get_unverified_header(rotated.encode(CLAIMS))["kid"] == key_id(new_public)
    with pytest.raises(TokenBackendError):
        backend(new_private, algorithm=algorithm, verifying=new_public).decode(issued_before)
