"""Write-back through a durable outbox: nothing is lost, each write lands once.

Every write-back is first stored (the desired state, never a token) and then run: at once in a
background thread after a hook, or in the foreground for `pathway sync`. A failed run stays in
the outbox and is retried with backoff by a sweeper thread; a worker killed mid-run leaves a
lease that expires, and the entry is run again. Reconciliation is idempotent, so a rerun after a
write that did land writes nothing more. One patient is reconciled by one worker at a time
(a per-patient lock that holds across processes on one host; conditional creates on the
identifier cover replicas).
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pathway.fhir.careplan import PlanWriter
from pathway.fhir.client import FhirAuthError, FhirClient, FhirError
from pathway.fhir.smart import SigningKey, SmartBackendAuth
from pathway.fhir.writeback import Capabilities, Desired, Reconciler, WriteResult
from pathway.metrics import Metrics
from pathway.settings import Settings
from pathway.store.db import Store

log = logging.getLogger("pathway.outbox")
CAPABILITIES_TTL_SECONDS = 3600
MAX_ATTEMPTS = 20
SWEEP_SECONDS = 5.0
LOCK_STRIPES = 256


@dataclass(frozen=True, slots=True)
class Outcome:
    entry_id: int
    ok: bool
    result: WriteResult | None
    error: str | None = None


class WriteBack:
    """The outbox's API: `enqueue` (store a patient's desired state), `queue` (store, then run
    in the background), `write_now` (store and run here), `run` (run what is due); built from
    what it uses, not from the whole service."""

    def __init__(
        self, settings: Settings, store: Store, metrics: Metrics, writer: PlanWriter
    ) -> None:
        self.settings = settings
        self.store = store
        self.metrics = metrics
        self.writer = writer
        self._caps: dict[str, tuple[float, Capabilities]] = {}
        self._tokens: dict[int, str] = {}  # hook tokens, in memory only, for the first run
        self._executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="writeback")
        self._stop = threading.Event()
        self._pending: list[Future[None]] = []
        self._sweeper: threading.Thread | None = None
        # Striped locks: a fixed number, whatever the number of patients seen.
        self._locks = [threading.Lock() for _ in range(LOCK_STRIPES)]
        self._lock_dir = _lock_dir(settings.database_url)
        self._smart: SmartBackendAuth | None = None
        s = settings
        if s.smart_client_id and s.smart_private_key_file and s.smart_token_url:
            self._smart = SmartBackendAuth(
                s.smart_token_url,
                s.smart_client_id,
                SigningKey.from_file(s.smart_private_key_file),
                timeout=s.http_timeout_seconds,
            )
        self.sleep: Callable[[float], None] = time.sleep

    # ------------------------------------------------------------ clients and capabilities
    def client(self, base: str, token: str | None = None) -> FhirClient:
        auth: str | Callable[[], str | None] | None = token
        if self._smart is not None:
            auth = self._smart
        return FhirClient(
            base, token=auth, timeout=self.settings.http_timeout_seconds, sleep=self.sleep
        )

    def capabilities(self, base: str, client: FhirClient | None = None) -> Capabilities:
        hit = self._caps.get(base)
        if hit is not None and time.monotonic() - hit[0] < CAPABILITIES_TTL_SECONDS:
            return hit[1]
        caps = Capabilities.from_statement((client or self.client(base)).capabilities())
        self._caps[base] = (time.monotonic(), caps)
        return caps

    # ------------------------------------------------------------ queueing and running
    @staticmethod
    def key(base: str, patient_id: str) -> str:
        return hashlib.sha256(f"{base}|{patient_id}".encode()).hexdigest()

    def enqueue(self, base: str, want: Desired, token: str | None = None) -> int:
        entry = self.store.outbox_put(
            self.key(base, want.patient_id), base, want.to_json().decode()
        )
        if token:
            self._tokens[entry] = token
        self.metrics.outbox_depth.inc()
        return entry

    def queue(self, base: str, want: Desired, token: str | None = None) -> int:
        """Store, then run in the background (the hook does not wait for the EHR)."""
        entry = self.enqueue(base, want, token)
        self._track(self._executor.submit(self._run_logged, entry))
        return entry

    def submit(self, job: Callable[[], None]) -> None:
        self._track(self._executor.submit(job))

    def _track(self, future: Future[None]) -> None:
        # Only unfinished runs are kept (for drain): a long-lived worker must not accumulate.
        self._pending = [f for f in self._pending if not f.done()]
        self._pending.append(future)

    def drain(self, timeout: float = 30.0) -> None:
        """Wait for the background runs started so far (tests, shutdown)."""
        pending, self._pending = self._pending, []
        wait(pending, timeout=timeout)

    def write_now(self, base: str, want: Desired, token: str | None = None) -> Outcome:
        entry = self.enqueue(base, want, token)
        outcomes = self.run(only=entry)
        return outcomes[0] if outcomes else Outcome(entry, False, None, "not claimed")

    def _run_logged(self, entry: int) -> None:
        try:
            self.run(only=entry)
        except Exception:  # a background thread must not die silently
            log.exception("write-back run failed unexpectedly")

    def run(self, only: int | None = None) -> list[Outcome]:
        outcomes = []
        for row in self.store.outbox_claim(only=only):
            outcomes.append(self._run_entry(row))
        self.metrics.outbox_depth.set(self.store.outbox_depth())
        return outcomes

    def _run_entry(self, row: dict[str, Any]) -> Outcome:
        entry = int(row["id"])
        want = Desired.from_json(row["body"])
        base = str(row["target"])
        token = self._tokens.pop(entry, None)
        try:
            result = self._reconcile(str(row["key"]), base, token, want)
        except FhirAuthError as e:
            if self._smart is None:
                return self._failed(row, e)
            # The token expired or was revoked mid-run: one fresh token, one more try.
            self._smart.invalidate()
            try:
                result = self._reconcile(str(row["key"]), base, None, want)
            except FhirError as again:
                return self._failed(row, again)
        except FhirError as e:
            return self._failed(row, e)
        self.store.outbox_done(entry)
        self.metrics.writeback.labels("written" if result.wrote else "unchanged").inc()
        return Outcome(entry, True, result)

    def _reconcile(self, key: str, base: str, token: str | None, want: Desired) -> WriteResult:
        with self.patient_lock(key):
            client = self.client(base, token)
            caps = self.capabilities(base, client)
            reconciler = Reconciler(self.writer, client, caps, self.settings.writeback_fallback)
            if self.settings.writeback == "document-reference":
                return reconciler.document_reference(want)
            return reconciler.apply(want)

    def _failed(self, row: dict[str, Any], e: FhirError) -> Outcome:
        entry = int(row["id"])
        attempts = int(row["attempts"])
        give_up = attempts >= MAX_ATTEMPTS
        delay = min(2.0**attempts, 300.0)
        self.store.outbox_retry(entry, str(e), delay, give_up=give_up)
        self.metrics.writeback.labels("failed" if give_up else "retry").inc()
        log.warning(
            "write-back to the FHIR server failed (attempt %d%s): %s",
            attempts,
            ", giving up" if give_up else f", retry in {delay:.0f}s",
            type(e).__name__,
        )
        return Outcome(entry, False, None, str(e))

    @contextmanager
    def patient_lock(self, key: str) -> Iterator[None]:
        lock = self._locks[int(key[:8], 16) % LOCK_STRIPES]
        with lock:
            self._lock_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self._lock_dir / f"{key[:2]}.lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)

    # ------------------------------------------------------------ the sweeper
    def start(self) -> None:
        if self._sweeper is None:
            self._sweeper = threading.Thread(target=self._sweep, name="outbox-sweeper", daemon=True)
            self._sweeper.start()

    def stop(self) -> None:
        self._stop.set()
        self._executor.shutdown(wait=True)

    def _sweep(self) -> None:
        while not self._stop.wait(SWEEP_SECONDS):
            try:
                self.run()
            except Exception:
                log.exception("outbox sweep failed")


def _lock_dir(database_url: str) -> Path:
    if database_url.startswith("sqlite:///") and database_url != "sqlite:///:memory:":
        return Path(database_url[len("sqlite:///") :]).parent / "locks"
    return Path(os.environ.get("TMPDIR", "/tmp")) / "oud-pathway-locks"  # noqa: S108
