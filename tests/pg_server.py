"""A throwaway PostgreSQL cluster on loopback for the store tests (initdb + pg_ctl)."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any

# The store's tables a test empties before it starts (not `health`, `app_session`: the store's
# own bookkeeping and the app's sessions, which no test here shares across cases).
STORE_TABLES = ("outbox", "seen_jti", "feedback", "audit")


def empty_store(engine: Any) -> None:
    """Delete every row of STORE_TABLES (the store is migrated: `Store(url)` did it)."""
    with engine.begin() as c:
        for table in STORE_TABLES:
            c.exec_driver_sql(f"DELETE FROM {table}")


def pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class PgServer:
    def __init__(self) -> None:
        self.bin = pg_bin()
        if self.bin is None:
            raise RuntimeError("PostgreSQL server binaries not found (apt-get install postgresql)")
        self.tmp = Path(tempfile.mkdtemp(prefix="pathway-pg-"))
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.as_root = os.geteuid() == 0
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        cmd = list(args)
        if self.as_root:  # PostgreSQL refuses to run as root
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True, timeout=60)

    def __enter__(self) -> PgServer:
        assert self.bin is not None
        if self.as_root:
            shutil.chown(self.tmp, "postgres", "postgres")
        data = self.tmp / "data"
        self._run(
            str(self.bin / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"
        )
        self._run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(data),
            "-w",
            "-l",
            str(self.tmp / "log"),
            "-o",
            f"-p {self.port} -k {self.tmp} -c listen_addresses=127.0.0.1 -c fsync=off",
            "start",
        )
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        assert self.bin is not None
        try:
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.tmp / "data"), "-m", "fast", "stop")
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)
