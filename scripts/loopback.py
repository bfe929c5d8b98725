"""Shared by the benchmark and the load run: loopback ports, a trusted CDS client that signs
tokens, and one raw HTTP/1.1 hook POST."""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from pathlib import Path

import jwt
import orjson
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm


class TrustedCaller:
    """A CDS client with an RS384 key: its PATHWAY_CDS_CLIENTS_FILE entry, and fresh tokens (a
    new jti each, so none is refused as a replay)."""

    def __init__(self, iss: str, kid: str) -> None:
        self.iss, self.kid = iss, kid
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.jwk = {
            **RSAAlgorithm.to_jwk(self._key.public_key(), as_dict=True),
            "kid": kid,
            "alg": "RS384",
        }

    def clients_file(self) -> bytes:
        return orjson.dumps([{"iss": self.iss, "jwks": {"keys": [self.jwk]}}])

    def tokens(self, audience: str, count: int, lifetime_seconds: int) -> list[str]:
        now = int(time.time())
        claims = {"iss": self.iss, "aud": audience, "iat": now, "exp": now + lifetime_seconds}
        return [
            jwt.encode(
                {**claims, "jti": str(uuid.uuid4())},
                self._key,
                algorithm="RS384",
                headers={"kid": self.kid},
            )
            for _ in range(count)
        ]


def server_env(env: dict[str, str]) -> dict[str, str]:
    """The environment for a `pathway serve` child started in another directory: PYTHONPATH
    entries made absolute, so PYTHONPATH=build/compiled still selects the compiled build."""
    given = env.get("PYTHONPATH")
    if given:
        env = {
            **env,
            "PYTHONPATH": os.pathsep.join(str(Path(p).resolve()) for p in given.split(os.pathsep)),
        }
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, seconds: float = 30.0) -> bool:
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.1)
    return False


async def post(port: int, path: str, body: bytes, token: str) -> float | None:
    """POST with a bearer token on a new connection; the latency in ms, or None if not 200."""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    t0 = time.perf_counter()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(head + body)
        await writer.drain()
        data = await reader.read()
        writer.close()
    except OSError:
        return None
    return (time.perf_counter() - t0) * 1000 if data.startswith(b"HTTP/1.1 200") else None
