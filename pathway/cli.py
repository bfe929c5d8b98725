"""`pathway serve | evaluate | rules | sync | seed | outbox | db | population | sweep`: the
command line."""

from __future__ import annotations

import argparse
import atexit
import logging
import os
import shutil
import sys
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from gunicorn import glogging

from pathway.config import ConfigError, load_config
from pathway.evaluation import Evaluation, Evaluator
from pathway.fhir.careplan import PHASE_TITLES, STATUS_WORDS
from pathway.fhir.facts import NoPatientError, parse_when
from pathway.settings import Settings, SettingsError


def _as_of(raw: str | None, default: datetime | None = None) -> datetime:
    if raw is None:
        return default or datetime.now(UTC)
    when = parse_when(raw)
    if when is None or when.date_only:
        raise SystemExit(f"--as-of must be a full dateTime with a time zone, got {raw!r}")
    return when.earliest


def _read_input(path: str) -> tuple[Any, datetime | None]:
    """A Bundle, a list of resources, or a scenario file ({"bundle", "asOf"})."""
    try:
        raw = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    except OSError as e:
        raise SystemExit(f"{path}: {e.strerror}") from e
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise SystemExit(f"{path}: malformed JSON: {e}") from e
    if isinstance(doc, dict) and "bundle" in doc and "resourceType" not in doc:
        as_of = parse_when(doc.get("asOf"))
        return doc["bundle"], as_of.earliest if as_of and not as_of.date_only else None
    return doc, None


def summary(ev: Evaluation, action_display: dict[str, str]) -> str:
    d = ev.decision
    flags = [
        n
        for n, on in (("return to use", d.return_to_use), ("suspected OUD", d.suspected_oud))
        if on
    ]
    lines = [
        f"Patient/{d.patient_id} as of {d.as_of.isoformat().replace('+00:00', 'Z')}",
        f"Phase: {d.phase} - {PHASE_TITLES[d.phase]}" + (f" [{', '.join(flags)}]" if flags else ""),
        "Why: " + " ".join(d.phase_reasons) + f" [{d.phase_rule}]",
    ]
    if d.phase != "not-applicable":
        lines.append("")
        lines.append("Medication options:")
        for m in d.medications:
            lines.append(f"  {m.medication:<14} {STATUS_WORDS[m.status]}")
            for r, rule in zip(m.reasons, m.rules, strict=False):
                lines.append(f"      - {r} [{rule}]")
        if d.flags:
            lines.append("")
            lines.append("Safety:")
            for f in d.flags:
                lines.append(f"  [{f.indicator}] {f.summary}: {f.detail} [{f.rule}]")
        lines.append("")
        lines.append("Tasks:")
        for t in d.tasks:
            lines.append(
                f"  {t.code:<26} due {t.due.isoformat()} ({t.priority}): {t.reason} [{t.rule}]"
            )
    notes = [*d.notes, *ev.notes]
    if notes:
        lines.append("")
        lines.append("Notes:")
        lines.extend(f"  - {n}" for n in notes)
    lines.append("")
    lines.append("Decision support for a clinician, not an order.")
    return "\n".join(lines)


def decision_json(ev: Evaluation) -> dict[str, Any]:
    """The decision for machines, every reason with the id of its rule."""
    d = ev.decision
    return {
        "patient": d.patient_id,
        "asOf": d.as_of.isoformat().replace("+00:00", "Z"),
        "phase": d.phase,
        "phaseRule": d.phase_rule,
        "phaseReasons": list(d.phase_reasons),
        "returnToUse": d.return_to_use,
        "suspectedOud": d.suspected_oud,
        "medications": [
            {
                "medication": m.medication,
                "status": m.status,
                "reasons": list(m.reasons),
                "rules": list(m.rules),
                "evidence": list(m.evidence),
            }
            for m in d.medications
        ],
        "flags": [
            {"code": f.code, "indicator": f.indicator, "summary": f.summary, "rule": f.rule}
            for f in d.flags
        ],
        "tasks": [
            {"code": t.code, "due": t.due.isoformat(), "priority": t.priority, "rule": t.rule}
            for t in d.tasks
        ],
        "rulesFired": list(d.rules_fired),
        "notes": [*d.notes, *ev.notes],
    }


def cmd_evaluate(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    config = load_config(settings.config_dir, settings.profiles_dir)
    evaluator = Evaluator(config)
    data, file_as_of = _read_input(args.file)
    as_of = _as_of(args.as_of, file_as_of)
    if args.explain:
        return _explain(config, data, as_of, args)
    try:
        ev = evaluator.evaluate(data, as_of, patient_id=args.patient)
    except NoPatientError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.format == "fhir":
        sys.stdout.write(
            orjson.dumps(evaluator.apply_bundle(ev), option=orjson.OPT_INDENT_2).decode() + "\n"
        )
    elif args.format == "json":
        sys.stdout.write(
            orjson.dumps(decision_json(ev), option=orjson.OPT_INDENT_2).decode() + "\n"
        )
    else:
        print(summary(ev, evaluator.writer.action_display))
    return 0


def _explain(config: Any, data: Any, as_of: datetime, args: argparse.Namespace) -> int:
    from pathway import explain

    try:
        e = explain.explain(config, data, as_of, patient_id=args.patient)
    except NoPatientError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.format == "json":
        sys.stdout.write(orjson.dumps(e.as_dict(), option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        print(explain.as_text(e))
    return 0


def cmd_rules(args: argparse.Namespace) -> int:
    from pathway import rulebook

    settings = Settings.from_env()
    load_config(settings.config_dir, settings.profiles_dir)  # the same checks as at start
    raw = rulebook.load_raw(settings.config_dir)
    if args.format == "json":
        sys.stdout.write(
            orjson.dumps(rulebook.as_json(raw), option=orjson.OPT_INDENT_2).decode() + "\n"
        )
    elif args.format == "markdown":
        sys.stdout.write(rulebook.as_markdown(raw))
    else:
        print(rulebook.as_text(raw))
    return 0


def _service() -> Any:
    from pathway.service import Service

    return Service(Settings.from_env())


def cmd_sync(args: argparse.Namespace) -> int:
    """Read one patient from a FHIR server, evaluate, and show or write the result."""
    from pathway.fhir.bundle import FHIR_ID
    from pathway.fhir.client import FhirError

    if not FHIR_ID.fullmatch(args.patient):  # it goes into the FHIR server's URLs
        print("error: --patient must be a FHIR id (letters, digits, '-', '.')", file=sys.stderr)
        return 2
    svc = _service()
    base = args.fhir_base.rstrip("/")
    client = svc.writeback.client(base)
    as_of = _as_of(args.as_of)
    svc.clock = lambda: as_of
    try:
        ev = svc.evaluate_from_server(args.patient, client)
    except FhirError as e:
        print(f"error: the FHIR server could not be read: {e}", file=sys.stderr)
        return 1
    print(summary(ev, svc.evaluator.writer.action_display))
    if args.dry_run:
        print("\n(dry run: nothing written)")
        return 0
    outcome = svc.writeback.write_now(base, svc.desired_state(ev))
    if not outcome.ok:
        print(
            f"\nerror: write-back failed (outbox entry {outcome.entry_id}): {outcome.error}; "
            "see `pathway outbox list`",
            file=sys.stderr,
        )
        return 1
    assert outcome.result is not None
    print(f"\nWrite-back ({outcome.result.mode}):")
    for line in outcome.result.written or ["nothing changed: nothing written"]:
        print(f"  {line}")
    return 0


def cmd_seed(args: argparse.Namespace) -> int:
    """Load test data into a sandbox FHIR server: transaction Bundles as they are, other
    Bundles and single resources as a transaction of PUTs (or POSTs without an id)."""
    from pathway.fhir.client import FhirClient, FhirError

    client = FhirClient(args.fhir_base.rstrip("/"), timeout=60)
    loaded = 0
    for name in args.files:
        data, _ = _read_input(name)
        if (
            isinstance(data, dict)
            and data.get("resourceType") == "Bundle"
            and data.get("type") in ("transaction", "batch")
        ):
            bundle = data
        else:
            from pathway.fhir.bundle import flatten

            entries = []
            for res, url in flatten(data).resources:
                rid = res.get("id")
                request = (
                    {"method": "PUT", "url": f"{res['resourceType']}/{rid}"}
                    if rid
                    else {"method": "POST", "url": str(res["resourceType"])}
                )
                entries.append(
                    {
                        "fullUrl": url or f"urn:uuid:{uuid.uuid4()}",
                        "resource": res,
                        "request": request,
                    }
                )
            bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
        try:
            client.request("POST", "", body=bundle)
        except FhirError as e:
            print(f"{name}: not loaded: {e}", file=sys.stderr)
            return 1
        loaded += len(bundle.get("entry") or [])
        print(f"{name}: {len(bundle.get('entry') or [])} resources")
    print(f"loaded {loaded} resources into {args.fhir_base}")
    return 0


def _store() -> Any:
    from pathway.store.db import Store

    return Store(Settings.from_env().database_url)


def _when(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)  # SQLite gives back naive UTC times
        return value.isoformat(timespec="seconds").replace("+00:00", "Z")
    return str(value)


def outbox_entry(row: dict[str, Any]) -> dict[str, Any]:
    """An outbox row as CONTRACT.md §4 shows it (no patient data: the body is not shown)."""
    status = "pending" if row["status"] == "working" else str(row["status"])
    last_error = None
    if row.get("error_interaction") or row.get("last_error"):
        last_error = {
            "httpStatus": row.get("error_status"),
            "interaction": row.get("error_interaction") or "write-back",
            "issueCode": row.get("error_code"),
            "diagnostics": row.get("last_error") or "",
        }
    return {
        "id": int(row["id"]),
        "status": status,
        "attempts": int(row["attempts"]),
        "lastError": last_error,
        "target": row["target"],
        "running": row["status"] == "working",
        "createdAt": _when(row.get("created_at")),
        "updatedAt": _when(row.get("updated_at")),
        "nextAttemptAt": _when(row.get("next_attempt_at")) if status == "pending" else None,
    }


def cmd_outbox(args: argparse.Namespace) -> int:
    store = _store()
    if args.action == "list":
        entries = [outbox_entry(r) for r in store.outbox_list(args.status)]
        if args.format == "json":
            sys.stdout.write(orjson.dumps(entries, option=orjson.OPT_INDENT_2).decode() + "\n")
            return 0
        if not entries:
            print("the outbox is empty" + (f" ({args.status})" if args.status else ""))
            return 0
        print(f"{'id':>6}  {'status':<8} {'attempts':>8}  {'updated':<20}  last error")
        for e in entries:
            err = e["lastError"]
            why = (
                f"{err['httpStatus'] or 'no answer'} {err['interaction']}"
                f" [{err['issueCode'] or '-'}] {err['diagnostics']}"
                if err
                else ""
            )
            status = e["status"] + ("*" if e["running"] else "")
            print(
                f"{e['id']:>6}  {status:<8} {e['attempts']:>8}  {e['updatedAt'] or '':<20}  {why}"
            )
        if any(e["running"] for e in entries):
            print("* being written now")
        return 0
    if args.action == "retry":
        if args.dead == (args.id is not None):
            print("error: give an entry id or --dead", file=sys.stderr)
            return 2
        ids = store.outbox_requeue(args.id, dead=args.dead)
        if not ids:
            print("nothing to retry (no such pending or dead entry)", file=sys.stderr)
            return 1
        print(
            f"requeued {len(ids)} entr{'y' if len(ids) == 1 else 'ies'}: {', '.join(map(str, ids))}"
        )
        print("the running service writes them within seconds (or run `pathway sync`)")
        return 0
    if not store.outbox_discard(args.id):
        print(f"error: no entry {args.id} that can be discarded (running now?)", file=sys.stderr)
        return 1
    print(f"discarded entry {args.id}")
    return 0


def cmd_db(args: argparse.Namespace) -> int:
    from pathway.store.db import StoreError

    try:
        before, after = _upgrade(Settings.from_env().database_url)
    except StoreError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if before == after:
        print(f"the store is at revision {after}: nothing to do")
    else:
        print(f"the store was upgraded from revision {before or 'none (empty)'} to {after}")
    return 0


def _upgrade(url: str) -> tuple[str | None, str]:
    """Migrate the store at `url` to the newest schema (the only place tables are made)."""
    from sqlalchemy.exc import SQLAlchemyError

    from pathway.store import schema
    from pathway.store.db import StoreError, open_engine

    engine, sqlite_path = open_engine(url)
    try:
        return schema.upgrade(engine, sqlite_path)
    except (SQLAlchemyError, OSError) as e:
        raise StoreError(f"the store could not be upgraded: {type(e).__name__}: {e}") from e
    finally:
        engine.dispose()


def cmd_serve(args: argparse.Namespace) -> int:
    from gunicorn.app.base import BaseApplication

    from pathway import server
    from pathway.store import db

    settings = Settings.from_env()
    # The schema is brought up to date here, once, before any worker starts: workers only
    # check it (two workers creating tables at once on a fresh file made one fail to boot).
    from pathway.logs import configure_logging

    configure_logging(settings.log_level)
    log = logging.getLogger("pathway.store")
    try:
        before, after = _upgrade(settings.database_url)
    except db.StoreError as e:
        log.error("the store could not be migrated: %s", e)
        return 1
    if before != after:
        log.info("store schema upgraded from %s to %s", before or "none (empty)", after)
    db.AUTO_MIGRATE = False  # the forked workers inherit this
    # Metrics of all workers, added up by /metrics (a fresh directory per start).
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        metrics_dir = tempfile.mkdtemp(prefix="pathway-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        master = os.getpid()

        def _remove_metrics() -> None:
            # Forked workers inherit this handler: only the master removes the directory (a
            # worker that exited used to take every other worker's metrics with it).
            if os.getpid() == master:
                shutil.rmtree(metrics_dir, True)

        atexit.register(_remove_metrics)
    host = args.host or settings.host
    port = args.port or settings.port
    workers = args.workers or settings.workers

    class App(BaseApplication):
        def load_config(self) -> None:
            binds = [f"{host}:{port}"]
            if settings.metrics_bind is not None:  # the scraper's own listener
                mhost, mport = settings.metrics_bind
                binds.append(f"[{mhost}]:{mport}" if ":" in mhost else f"{mhost}:{mport}")
            self.cfg.set("bind", binds)
            self.cfg.set("workers", workers)
            # gunicorn's sync worker, its own refusals (431, 414, 400) as OperationOutcomes
            self.cfg.set("worker_class", "pathway.server.PathwayWorker")
            # A worker stuck on one request longer than this is killed and replaced.
            self.cfg.set("timeout", settings.request_timeout_seconds)
            self.cfg.set("graceful_timeout", 10)
            self.cfg.set("keepalive", 5)
            # Request line and header limits, chosen (pathway/server.py says why)
            self.cfg.set("limit_request_line", server.LIMIT_REQUEST_LINE)
            self.cfg.set("limit_request_fields", server.LIMIT_REQUEST_FIELDS)
            self.cfg.set("limit_request_field_size", server.LIMIT_REQUEST_FIELD_SIZE)
            # No control socket: by default every gunicorn of a user shares one under $HOME
            # (gunicorn >= 24); this service does not use gunicornc.
            if "control_socket_disable" in self.cfg.settings:
                self.cfg.set("control_socket_disable", True)
            self.cfg.set("post_worker_init", _freeze_gc)
            self.cfg.set("child_exit", _worker_gone)
            self.cfg.set("logger_class", "pathway.cli.GunicornLogger")
            # gunicorn's own lines as JSON too (its access log stays off: ours has the route)
            self.cfg.set(
                "logconfig_dict",
                {
                    "version": 1,
                    "disable_existing_loggers": False,
                    "formatters": {"json": {"()": "pathway.logs.JsonFormatter"}},
                    "handlers": {
                        "stderr": {
                            "class": "logging.StreamHandler",
                            "formatter": "json",
                            "stream": "ext://sys.stderr",
                        }
                    },
                    "root": {"level": "WARNING", "handlers": ["stderr"]},
                    "loggers": {
                        "gunicorn.error": {
                            "handlers": ["stderr"],
                            "level": "INFO",
                            "propagate": False,
                        },
                        "gunicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
                    },
                },
            )

        def load(self) -> Any:
            from pathway import create_app

            return create_app()

    App().run()
    return 0


class GunicornLogger(glogging.Logger):
    """gunicorn's logger without its access line: ours (pathway.api.observability) has the
    route and the request id, and gunicorn would format its atoms for every request only to
    drop them."""

    def access(self, resp: Any, req: Any, environ: Any, request_time: Any) -> None:
        return None


def _worker_gone(_server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def _freeze_gc(_worker: Any) -> None:
    # Long-lived config objects move out of the collector's sight: p99 drops from ~15 ms to ~3 ms.
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pathway", description="OUD care pathway service")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="start the service (gunicorn)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int)
    serve.set_defaults(func=cmd_serve)

    ev = sub.add_parser("evaluate", help="evaluate a patient's FHIR data and print the result")
    ev.add_argument(
        "file",
        help="a Bundle (or a scenario file with 'bundle' and 'asOf'); - reads standard input",
    )
    ev.add_argument(
        "--as-of",
        help="evaluation time, e.g. 2025-06-15T12:00:00Z (default: now, or the scenario's asOf)",
    )
    ev.add_argument("--patient", help="patient id when the Bundle holds several")
    ev.add_argument(
        "--explain",
        action="store_true",
        help="show which resources were read as which facts, which were ignored and why, and "
        "which rules fired",
    )
    ev.add_argument(
        "--format",
        choices=("text", "fhir", "json"),
        default="text",
        help="text (default); fhir: the $apply Bundle; json: the --explain report as JSON",
    )
    ev.set_defaults(func=cmd_evaluate)

    rules = sub.add_parser(
        "rules", help="print the rule catalogue (id, section, source, config keys and values)"
    )
    rules.add_argument("--format", choices=("text", "markdown", "json"), default="text")
    rules.set_defaults(func=cmd_rules)

    sync = sub.add_parser("sync", help="read a patient from a FHIR server, evaluate, write back")
    sync.add_argument("--fhir-base", required=True, help="the FHIR server's base URL")
    sync.add_argument("--patient", required=True, help="the patient id")
    sync.add_argument("--as-of", help="evaluation time (default: now)")
    sync.add_argument("--dry-run", action="store_true", help="show, write nothing")
    sync.set_defaults(func=cmd_sync)

    seed = sub.add_parser("seed", help="load FHIR test data into a sandbox server")
    seed.add_argument("--fhir-base", required=True)
    seed.add_argument("files", nargs="+", help="Bundles or resources (JSON)")
    seed.set_defaults(func=cmd_seed)

    outbox = sub.add_parser("outbox", help="the write-back outbox: list, retry, discard")
    osub = outbox.add_subparsers(dest="action", required=True)
    olist = osub.add_parser("list", help="entries, newest first")
    olist.add_argument("--status", choices=("pending", "done", "dead"))
    olist.add_argument("--format", choices=("text", "json"), default="text")
    oretry = osub.add_parser("retry", help="run an entry (or every dead one) again now")
    oretry.add_argument("id", nargs="?", type=int)
    oretry.add_argument("--dead", action="store_true", help="every dead entry")
    odiscard = osub.add_parser("discard", help="drop an entry (it will not be written)")
    odiscard.add_argument("id", type=int)
    outbox.set_defaults(func=cmd_outbox)

    dbp = sub.add_parser("db", help="the store's schema")
    dsub = dbp.add_subparsers(dest="action", required=True)
    dsub.add_parser("upgrade", help="migrate the store to this release's schema")
    dbp.set_defaults(func=cmd_db)

    from pathway.population.cli import add_commands

    add_commands(sub)  # population, sweep

    args = parser.parse_args(argv)
    try:
        result: int = args.func(args)
    except (ConfigError, SettingsError) as e:
        print(f"configuration error: {e}", file=sys.stderr)
        return 2
    return result


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
