"""Shared by the benchmark and the load run: loopback ports and one raw HTTP/1.1 hook POST."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from pathlib import Path


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
