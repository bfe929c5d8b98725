"""`pathway population` and `pathway sweep`: argument parsing and the command handlers."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

from pathway.settings import Settings


def _as_of(raw: str | None) -> datetime:
    from pathway.fhir.facts import parse_when

    if raw is None:
        return datetime.now(UTC)
    when = parse_when(raw)
    if when is None or when.date_only:
        raise SystemExit(f"--as-of must be a full dateTime with a time zone, got {raw!r}")
    return when.earliest


def _workers(raw: int | None) -> int:
    n = raw if raw is not None else (os.cpu_count() or 1)
    if n < 1:
        raise SystemExit("--workers must be 1 or more")
    return n


def cmd_population(args: argparse.Namespace) -> int:
    from pathway.population.run import default_paths, population, summary_text

    settings = Settings.from_env()
    as_of = _as_of(args.as_of)
    out = Path(args.out)
    paths = default_paths(settings.config_dir, settings.profiles_dir)
    if args.export:
        from pathway.population.bulk import BulkError, export_from_settings

        try:
            ndjson_dir = export_from_settings(settings, args.export, args.group, out)
        except BulkError as e:
            print(f"error: the bulk export failed: {e}", file=sys.stderr)
            return 1
        source = f"Bulk Data export of {args.export}" + (
            f" Group/{args.group}" if args.group else ""
        )
    else:
        if args.group:
            print("error: --group goes with --export", file=sys.stderr)
            return 2
        ndjson_dir = Path(args.ndjson)
        source = f"NDJSON in {ndjson_dir}"
    try:
        run = population(
            ndjson_dir,
            out,
            as_of,
            paths,
            engine=args.engine,
            workers=_workers(args.workers),
            source=source,
        )
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except ImportError as e:
        print(f"error: {e}", file=sys.stderr)  # the engine's message says how to install it
        return 2
    print(summary_text(run))
    if args.write_back:
        from pathway.population.sweep import write_back_population

        base = args.fhir_base or args.export
        return write_back_population(settings, out / "patients.ndjson", base, as_of, args.dry_run)
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from pathway.population.sweep import run_sweep_command

    return run_sweep_command(Settings.from_env(), args, _as_of(args.as_of) if args.as_of else None)


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    pop = sub.add_parser(
        "population",
        help="evaluate a whole population from Bulk Data NDJSON: patients, measures, report",
    )
    src = pop.add_mutually_exclusive_group(required=True)
    src.add_argument("--ndjson", metavar="DIR", help="a folder of .ndjson / .ndjson.gz files")
    src.add_argument("--export", metavar="URL", help="a FHIR server's base URL: run $export")
    pop.add_argument("--group", metavar="ID", help="export the members of this Group only")
    pop.add_argument("--out", required=True, metavar="DIR", help="where the results go")
    pop.add_argument("--as-of", help="evaluation time, e.g. 2025-06-15T12:00:00Z (default: now)")
    pop.add_argument("--engine", choices=("local", "spark"), default="local")
    pop.add_argument("--workers", type=int, help="processes (default: the number of cores)")
    pop.add_argument(
        "--write-back", action="store_true", help="queue the plans' changes through the outbox"
    )
    pop.add_argument("--fhir-base", help="where --write-back writes (default: --export's URL)")
    pop.add_argument("--dry-run", action="store_true", help="with --write-back: count, write none")
    pop.set_defaults(func=cmd_population)

    sw = sub.add_parser(
        "sweep",
        help="re-evaluate every enrolled patient on a FHIR server and queue what changed",
    )
    sw.add_argument("--fhir-base", required=True, help="the FHIR server's base URL")
    sw.add_argument(
        "--group",
        metavar="ID",
        help="the members of this Group (default: every patient with an active CarePlan of ours)",
    )
    sw.add_argument("--as-of", help="evaluation time (default: now)")
    sw.add_argument("--dry-run", action="store_true", help="evaluate and count, write nothing")
    sw.set_defaults(func=cmd_sweep)
