"""`pathway sweep`: keep every enrolled patient's plan current as time passes.

Most of the pathway is driven by the clock (a drug screen falls due 30 days after the last, an ECG
after 12 months, retention at 180 days), and the patients who do not come in are the ones whose
Tasks go stale. The sweep re-evaluates every enrolled patient (our CarePlan is on the server, or
the patient is a member of a Group) as of T and queues what changed through the outbox, so that
due Tasks appear on time and Tasks no longer due are cancelled.

- idempotent: a patient whose plan and Tasks on the server already match is not queued at all
  (and the outbox's reconciliation writes nothing unchanged), so a second sweep writes nothing;
- resumable: a journal (`PATHWAY_SWEEP_STATE_DIR`, default `var/sweep`) records each finished
  patient (a hash, not the id); a sweep killed half-way, run again, keeps the first run's T and
  skips who is done;
- rate-limited toward the EHR: at most `PATHWAY_SWEEP_RATE` patients a second (default 5: each
  patient is 6 reads, and a transaction when something changed);
- a progress bar on stderr when it is a terminal; a summary (patients, changed, unchanged,
  failed) always. Logs carry no patient data.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from pathway.fhir.bundle import FHIR_ID, flatten
from pathway.fhir.client import FhirClient, FhirError
from pathway.fhir.writeback import changes, desired, ours_in
from pathway.population.ndjson import patient_id_of
from pathway.population.progress import Progress
from pathway.settings import Settings

log = logging.getLogger("pathway.population.sweep")
PAGE_SIZE = 200
MAX_PAGES = 100_000


class SweepError(Exception):
    """The sweep cannot start (the message is safe to show)."""


@dataclass(slots=True)
class SweepSummary:
    patients: int = 0
    changed: int = 0
    unchanged: int = 0
    failed: int = 0
    resumed: int = 0  # done before an interruption, not evaluated again
    dry_run: bool = False
    failures: list[str] = field(default_factory=list)  # error types, never patient data

    def text(self) -> str:
        verb = "would change" if self.dry_run else "changed"
        line = (
            f"patients: {self.patients}, {verb}: {self.changed}, unchanged: {self.unchanged}, "
            f"failed: {self.failed}"
        )
        if self.resumed:
            line += f" (resumed: {self.resumed} done before the interruption)"
        return line


class RateLimiter:
    """At most `rate` events a second, on average (0 or less: no limit)."""

    def __init__(
        self,
        rate: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.clock = clock
        self.sleep = sleep
        self._next = 0.0

    def wait(self) -> None:
        if not self.interval:
            return
        now = self.clock()
        if self._next > now:
            self.sleep(self._next - now)
            now = self._next
        self._next = now + self.interval


class Journal:
    """The sweep's progress on disk: a header line, then one hashed patient id per finished
    patient (appended and flushed, so a kill loses at most the patient in hand)."""

    def __init__(self, folder: Path, base: str, group: str | None) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        key = hashlib.sha256(f"{base}|{group or ''}".encode()).hexdigest()[:20]
        self.path = folder / f"sweep-{key}.journal"
        self.base = base
        self.done: set[str] = set()
        self.as_of: str | None = None
        self._f: Any = None

    def hashed(self, pid: str) -> str:
        return hashlib.sha256(f"{self.base}|{pid}".encode()).hexdigest()[:24]

    def resume(self, max_age_seconds: float = 12 * 3600) -> bool:
        """Load an unfinished sweep; True when there was one, recent enough to finish (an
        older one, e.g. yesterday's that stopped on an unreachable server, is started over)."""
        if not self.path.exists():
            return False
        if time.time() - self.path.stat().st_mtime > max_age_seconds:
            return False
        with self.path.open("rb") as f:
            lines = f.read().splitlines()
        try:
            header = orjson.loads(lines[0]) if lines else {}
        except orjson.JSONDecodeError:
            header = {}
        self.as_of = header.get("asOf") if isinstance(header, dict) else None
        self.done = {x.decode() for x in lines[1:] if x}
        return self.as_of is not None

    def start(self, as_of: datetime) -> None:
        self.as_of = as_of.isoformat()
        self.done = set()
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_bytes(orjson.dumps({"asOf": self.as_of}) + b"\n")
        os.replace(tmp, self.path)

    def mark(self, pid: str) -> None:
        if self._f is None:
            self._f = self.path.open("ab")
        h = self.hashed(pid)
        self._f.write(h.encode() + b"\n")
        self._f.flush()
        self.done.add(h)

    def finish(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None
        self.path.unlink(missing_ok=True)

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None


def enrolled(client: FhirClient, canon: str, group: str | None) -> list[str]:
    """The patients to sweep, sorted: the members of Group `group`, or every patient with an
    active CarePlan of ours (searched by our identifier system)."""
    ids: set[str] = set()
    if group is not None:
        if not FHIR_ID.fullmatch(group):
            raise SweepError("--group must be a FHIR id")
        g = client.read("Group", group)
        for member in g.get("member") or []:
            if isinstance(member, dict) and not member.get("inactive"):
                pid = patient_id_of(member.get("entity"))
                if pid is not None:
                    ids.add(pid)
        return sorted(ids)
    client.max_pages = MAX_PAGES
    query = f"CarePlan?identifier={canon}/careplan|&status=active&_count={PAGE_SIZE}"
    for page in client.search_pages(query):
        for res, _ in flatten(page).resources:
            if res.get("resourceType") == "CarePlan":
                pid = patient_id_of(res.get("subject"))
                if pid is not None:
                    ids.add(pid)
    return sorted(ids)


class Sweeper:
    """One sweep of one FHIR server. `svc` is a pathway.service.Service (its evaluator,
    workflow reads and outbox)."""

    def __init__(
        self,
        svc: Any,
        base: str,
        as_of: datetime,
        dry_run: bool = False,
        rate: float = 5.0,
        progress: Progress | None = None,
        limiter: RateLimiter | None = None,
    ) -> None:
        self.svc = svc
        self.base = base.rstrip("/")
        self.as_of = as_of
        self.dry_run = dry_run
        self.limiter = limiter or RateLimiter(rate)
        self.progress = progress or Progress(enabled=False)
        self.canon = svc.config.pathway.canonical

    def patients(self, client: FhirClient, group: str | None) -> list[str]:
        return enrolled(client, self.canon, group)

    def one(self, client: FhirClient, pid: str) -> bool:
        """Re-evaluate one patient; True when something changed (and was queued)."""
        found = self.svc.workflow.read_patient(client, pid)
        data = list(found.values())
        ev = self.svc.evaluator.evaluate(data, self.as_of, patient_id=pid)
        want = desired(self.svc.evaluator.writer, ev)
        resources = [r for r, _ in flatten(data).resources]
        plan, tasks = ours_in(resources, pid, self.canon)
        if ev.decision.phase == "not-applicable":
            # Out of the pathway now: only a plan still active needs revoking.
            if plan is None or plan.get("status") != "active":
                return False
        elif changes(want, plan, tasks, self.canon).unchanged:
            return False
        if not self.dry_run:
            entry = self.svc.writeback.enqueue(self.base, want)
            outcomes = self.svc.writeback.run(only=entry)
            if not outcomes or not outcomes[0].ok:
                raise _Queued("the write failed and stays in the outbox for retry")
        return True

    def run(self, client: FhirClient, ids: list[str], journal: Journal | None) -> SweepSummary:
        summary = SweepSummary(dry_run=self.dry_run)
        todo = ids
        if journal is not None and journal.done:
            todo = [p for p in ids if journal.hashed(p) not in journal.done]
            summary.resumed = len(ids) - len(todo)
        summary.patients = len(ids)
        for i, pid in enumerate(todo, 1):
            self.limiter.wait()
            try:
                if self.one(client, pid):
                    summary.changed += 1
                else:
                    summary.unchanged += 1
            except (FhirError, _Queued) as e:
                summary.failed += 1
                summary.failures.append(type(e).__name__)
                log.warning(
                    "sweep: a patient could not be brought up to date: %s", type(e).__name__
                )
            else:
                if journal is not None:
                    journal.mark(pid)
            self.progress.update("sweeping", i, len(todo))
        return summary


class _Queued(Exception):
    pass


def _rate(env: dict[str, str] | os._Environ[str]) -> float:
    raw = env.get("PATHWAY_SWEEP_RATE", "5")
    try:
        rate = float(raw)
    except ValueError as e:
        raise SweepError("PATHWAY_SWEEP_RATE must be a number (patients per second)") from e
    if rate < 0:
        raise SweepError("PATHWAY_SWEEP_RATE must not be negative")
    return rate


def state_dir(settings: Settings) -> Path:
    raw = os.environ.get("PATHWAY_SWEEP_STATE_DIR")
    if raw:
        return Path(raw)
    db = settings.database_url
    if db.startswith("sqlite:///") and db != "sqlite:///:memory:":
        return Path(db[len("sqlite:///") :]).parent / "sweep"
    return Path("var") / "sweep"


def sweep(
    settings: Settings,
    base: str,
    group: str | None,
    as_of: datetime | None,
    dry_run: bool,
    svc: Any = None,
    progress: Progress | None = None,
    limiter: RateLimiter | None = None,
    now: Callable[[], datetime] | None = None,
    also: list[str] | None = None,
) -> SweepSummary:
    """`also`: more patients to bring up to date besides the enrolled ones (`population
    --write-back`: everyone the population run found in the pathway)."""
    base = base.rstrip("/")
    if not (settings.fhir_server_allowed(base) or base == settings.fhir_base_url):
        raise SweepError("the FHIR server is not on PATHWAY_FHIR_ALLOWLIST")
    if svc is None:
        from pathway.service import Service

        svc = Service(settings)
    scope = group if also is None else f"population|{group or ''}"
    journal = None if dry_run else Journal(state_dir(settings), base, scope)
    when = as_of
    if journal is not None and journal.resume():
        resumed_at = datetime.fromisoformat(str(journal.as_of))
        if as_of is None or as_of == resumed_at:
            when = resumed_at  # finish the interrupted sweep as of its own T
        else:
            journal.start(as_of)  # a different T asked for: a new sweep
    if when is None:
        when = (now or (lambda: datetime.now(UTC)))()
    if journal is not None and journal.as_of is None:
        journal.start(when)
    client = svc.writeback.client(base)
    sweeper = Sweeper(
        svc,
        base,
        when,
        dry_run,
        rate=_rate(os.environ),
        progress=progress,
        limiter=limiter,
    )
    try:
        ids = sweeper.patients(client, group)
        if also:
            ids = sorted(set(ids) | {p for p in also if FHIR_ID.fullmatch(p)})
        summary = sweeper.run(client, ids, journal)
    except FhirError as e:
        raise SweepError(f"the FHIR server could not be read: {e}") from e
    finally:
        if journal is not None:
            journal.close()  # a kill or an error: what was done stays recorded
    if journal is not None and not summary.failed:
        journal.finish()  # the failed ones, if any, are tried again next time
    return summary


def write_back_population(
    settings: Settings, patients_file: Path, base: str | None, as_of: datetime, dry_run: bool
) -> int:
    """`pathway population --write-back`: the same changes as a sweep, as of the population's
    T, for every patient the run found in the pathway and every patient already enrolled (whose
    plan may need revoking). Each is read from the server again: the plan and Tasks it holds
    now are what the outbox reconciles with."""
    target = base or settings.fhir_base_url
    if not target:
        print("error: --write-back needs --fhir-base (or PATHWAY_FHIR_BASE_URL)", file=sys.stderr)
        return 2
    ids: list[str] = []
    with patients_file.open("rb") as f:
        for raw in f:
            line = orjson.loads(raw)
            if line.get("phase") != "not-applicable":
                ids.append(str(line["patient"]))
    try:
        summary = sweep(settings, target, None, as_of, dry_run, progress=Progress(), also=ids)
    except SweepError as e:
        print(f"error: write-back: {e}", file=sys.stderr)
        return 2
    print("write-back: " + summary.text())
    return 1 if summary.failed else 0


def run_sweep_command(settings: Settings, args: argparse.Namespace, as_of: datetime | None) -> int:
    try:
        summary = sweep(
            settings,
            args.fhir_base,
            args.group,
            as_of,
            args.dry_run,
            progress=Progress(),
        )
    except SweepError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(summary.text())
    if summary.dry_run:
        print("(dry run: nothing queued, nothing written)")
    return 1 if summary.failed else 0
