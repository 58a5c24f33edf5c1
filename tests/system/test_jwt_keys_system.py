"""Signing-key rotation and key pairs against real daphne workers."""

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.system.conftest import PASSWORD, http_client, user_register
from tests.system.stack import SECRET_KEY
from tests.system.wsclient import frame_json, until_closed, ws_connect

NEW_KEY = "rotated-signing-key-0123456789abcdefghijklmnop"


async def session_outcome(worker, token: str) -> str | int:
    """ "welcome", or the close code the session was refused with."""
    async with ws_connect(worker, f"/ws/session/?token={token}") as ws:
        frame = await frame_json(ws)
        if frame["type"] == "welcome":
            return "welcome"
        return (await until_closed(ws)).code


def login(worker, username: str) -> str:
    with http_client(worker) as client:
        response = client.post(
            "/api/auth/token/", json={"username": username, "password": PASSWORD}
        )
    assert response.status_code == 200, response.text
    return response.json()["access"]


async def test_a_rotation_keeps_old_tokens_working_until_the_old_key_is_removed(start_worker):
    before = start_worker()  # signs with DJANGO_SECRET_KEY
    rotated = start_worker(JWT_SIGNING_KEY=NEW_KEY, JWT_PREVIOUS_SIGNING_KEYS=SECRET_KEY)
    removed = start_worker(JWT_SIGNING_KEY=NEW_KEY)
    alice = user_register(before)
    issued_after = login(rotated, alice["username"])

    assert await session_outcome(rotated, alice["access"]) == "welcome"
    assert await session_outcome(removed, alice["access"]) == 4500
    assert await session_outcome(removed, issued_after) == "welcome"
    assert (
        jwt.get_unverified_header(issued_after)["kid"]
        != jwt.get_unverified_header(alice["access"])["kid"]
    )


async def test_rs256_with_key_files_signs_and_verifies(start_worker, tmp_path):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = tmp_path / "jwt.key"
    public = tmp_path / "jwt.pub"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    worker = start_worker(
        JWT_ALGORITHM="RS256", JWT_PRIVATE_KEY_FILE=str(private), JWT_PUBLIC_KEY_FILE=str(public)
    )
    alice = user_register(worker)

    assert jwt.get_unverified_header(alice["access"])["alg"] == "RS256"
    assert await session_outcome(worker, alice["access"]) == "welcome"
    hs_forged = jwt.encode(
        jwt.decode(alice["access"], options={"verify_signature": False}), SECRET_KEY
    )
    assert await session_outcome(worker, hs_forged) == 4500
