"""Write-back through a durable outbox: nothing is lost, each write lands once.

Every write-back is first stored (the desired state, never a token) and then run: at once in a
background thread after a hook, or in the foreground for `pathway sync`. A run the server may
accept later (408, 429, 5xx, no answer) stays `pending` and is retried with backoff and jitter
by a sweeper thread, honouring Retry-After (capped), until MAX_ATTEMPTS; then, or at once for
an answer that will not change (400, 403, 404, 405, 409/412 after re-reading, 422, 401 after a
fresh token), the entry is `dead`: kept with its HTTP status, interaction, OperationOutcome
issue code and diagnostics (patient data removed) for `pathway outbox list`, until an operator
retries or discards it. A worker killed mid-run leaves a lease that expires, and the entry is
run again. Reconciliation is idempotent, so a rerun after a
write that did land writes nothing more. One patient is reconciled by one worker at a time
(a per-patient lock that holds across processes on one host; conditional creates on the
identifier cover replicas).
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import random
import re
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
from pathway.fhir.writeback import (
    Capabilities,
    Desired,
    Limits,
    Reconciler,
    WriteBackImpossible,
    WriteResult,
)
from pathway.metrics import Metrics
from pathway.settings import Settings
from pathway.store.db import EntryError, Store

log = logging.getLogger("pathway.outbox")
CAPABILITIES_TTL_SECONDS = 3600
MAX_ATTEMPTS = 20
MAX_BACKOFF_SECONDS = 300.0
MAX_RETRY_AFTER_SECONDS = 900.0  # a server asking for longer is waited on this long at most
SWEEP_SECONDS = 5.0
LOCK_STRIPES = 256


def retryable(e: FhirError) -> bool:
    """An answer the server may change its mind about: 408, 429, 5xx, or none at all (but not
    a write the server's capabilities rule out)."""
    if isinstance(e, WriteBackImpossible):
        return False
    return e.status is None or e.status in (408, 429) or e.status >= 500


def backoff(attempts: int, retry_after: float | None, rand: Callable[[], float]) -> float:
    """Seconds before the next attempt: exponential with jitter (half to full), at least the
    server's Retry-After (capped)."""
    delay = min(2.0**attempts, MAX_BACKOFF_SECONDS) * (0.5 + rand() / 2)
    if retry_after is not None:
        delay = max(delay, min(retry_after, MAX_RETRY_AFTER_SECONDS))
    return delay


def entry_error(e: FhirError, patient_id: str) -> EntryError:
    """What an operator reads of a failure: status, interaction, the OperationOutcome's first
    error issue code and its diagnostics, with the patient's id and references removed."""
    code: str | None = None
    texts: list[str] = []
    for issue in (e.outcome or {}).get("issue") or []:
        if not isinstance(issue, dict):
            continue
        if code is None and issue.get("severity") in ("error", "fatal", None):
            code = str(issue.get("code") or "") or None
        text = issue.get("diagnostics") or (issue.get("details") or {}).get("text")
        where = [str(x) for x in issue.get("expression") or [] if isinstance(x, str)]
        if text:
            texts.append(f"{text} (at {', '.join(where)})" if where else str(text))
    diagnostics = "; ".join(texts) or str(e)
    return EntryError(
        e.status, e.interaction or "write-back", code, scrub(diagnostics, patient_id)[:500]
    )


def scrub(text: str, patient_id: str) -> str:
    """Remove patient data from a server's message: the patient's id wherever it stands
    alone, any Patient reference, long digit runs (record numbers, phone numbers)."""
    if patient_id:
        text = re.sub(
            rf"(?<![A-Za-z0-9.\-]){re.escape(patient_id)}(?![A-Za-z0-9.\-])", "[patient]", text
        )
    text = re.sub(r"Patient/[A-Za-z0-9.\-]{1,64}", "Patient/[id]", text)
    return re.sub(r"\d{6,}", "[number]", text)


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
        self._limits: dict[str, Limits] = {}  # what each server showed it refuses
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
        self.random: Callable[[], float] = random.random  # jitter (tests fix it)
        self.max_attempts = MAX_ATTEMPTS

    # ------------------------------------------------------------ clients and capabilities
    def client(self, base: str, token: str | None = None) -> FhirClient:
        auth: str | Callable[[], str | None] | None = token
        if self._smart is not None:
            auth = self._smart
        # One quick retry in the client; longer waits are the outbox's (the entry is re-run).
        return FhirClient(
            base,
            token=auth,
            timeout=self.settings.http_timeout_seconds,
            retries=1,
            backoff=0.5,
            max_retry_after=2.0,
            sleep=self.sleep,
        )

    def capabilities(self, base: str, client: FhirClient | None = None) -> Capabilities:
        hit = self._caps.get(base)
        if hit is not None and time.monotonic() - hit[0] < CAPABILITIES_TTL_SECONDS:
            return hit[1]
        caps = Capabilities.from_statement((client or self.client(base)).capabilities())
        self._caps[base] = (time.monotonic(), caps)
        self._limits[base] = Limits()  # learnt again with the statement, hourly
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
            if self._smart is None or e.status != 401:
                return self._failed(row, want, e)
            # The token expired or was revoked mid-run: one fresh token, one more try.
            self._smart.invalidate()
            try:
                result = self._reconcile(str(row["key"]), base, None, want)
            except FhirError as again:
                return self._failed(row, want, again)
        except FhirError as e:
            return self._failed(row, want, e)
        self.store.outbox_done(entry)
        outcome = "written" if result.wrote else "unchanged"
        if result.mode == "document-reference":
            outcome = "fallback-document-reference" if result.wrote else outcome
        self.metrics.writeback.labels(outcome).inc()
        return Outcome(entry, True, result)

    def _reconcile(self, key: str, base: str, token: str | None, want: Desired) -> WriteResult:
        with self.patient_lock(key):
            client = self.client(base, token)
            caps = self.capabilities(base, client)
            reconciler = Reconciler(
                self.writer,
                client,
                caps,
                self.settings.writeback_fallback,
                limits=self._limits.setdefault(base, Limits()),
            )
            if self.settings.writeback == "document-reference":
                return reconciler.document_reference(want)
            return reconciler.apply(want)

    def _failed(self, row: dict[str, Any], want: Desired, e: FhirError) -> Outcome:
        entry = int(row["id"])
        attempts = int(row["attempts"])
        error = entry_error(e, want.patient_id)
        dead = not retryable(e) or attempts >= self.max_attempts
        delay = 0.0 if dead else backoff(attempts, e.retry_after, self.random)
        self.store.outbox_retry(entry, error, delay, give_up=dead)
        self.metrics.writeback.labels("dead" if dead else "retry").inc()
        self.metrics.writeback_errors.labels(
            str(error.http_status) if error.http_status else "no-answer"
        ).inc()
        log.warning(
            "write-back failed: %s %s, issue %s: %s (entry %d, attempt %d, %s)",
            error.http_status or ("-" if isinstance(e, WriteBackImpossible) else "no answer"),
            error.interaction,
            error.issue_code or "-",
            error.diagnostics,
            entry,
            attempts,
            "dead: see `pathway outbox list --status dead`" if dead else f"retry in {delay:.0f}s",
        )
        return Outcome(
            entry, False, None, f"{error.http_status or 'no answer'} {error.interaction}"
        )

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
