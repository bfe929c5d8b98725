"""Bounded load run with write-back, on loopback only.

    python scripts/loadrun.py [--seconds 60] [--rate 100] [--patients 40]

Starts the loopback FHIR server (tests/fhirserver, Medplum in memory) and `pathway serve`
(gunicorn, 2 sync workers, JWT verification on, PATHWAY_WRITEBACK=direct), seeds the patients,
then sends patient-view hooks at a fixed rate for a bounded time (each with a fresh JWT, patients
in turn, full prefetch, fhirServer = the loopback server). Afterwards it waits for the outbox to
drain and checks, on the FHIR server, that every patient has exactly one CarePlan of ours and no
duplicate open Task. It prints: requests sent / ok / errors, latency, achieved rate, the workers'
memory at start and end, outbox state, and the write-back check. Nothing here is asserted in the
test suite: it is a measurement (run it by hand or from `make load`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from loopback import TrustedCaller, free_port, post, server_env, wait_for_port  # noqa: E402

sys.path.insert(0, str(ROOT / "tests"))
CANON = "https://oud-pathway.github.io/fhir"
SCENARIOS = [
    "oud-dx-no-moud",
    "bup-day10-stabilization",
    "on-methadone-maintenance",
    "cows6-withdrawal-stabilization",
    "remission-recovery",
    "nlx-suitable-short-8d",
]


def patients(n: int) -> list[tuple[str, list[dict[str, Any]]]]:
    """n patients built from the scenarios, each with its own ids."""
    out = []
    for i in range(n):
        case = orjson.loads(
            (
                ROOT / "tests" / "data" / "scenarios" / f"{SCENARIOS[i % len(SCENARIOS)]}.json"
            ).read_bytes()
        )
        pid = f"load-{i}"
        resources = []
        for e in case["bundle"]["entry"]:
            r = orjson.loads(
                orjson.dumps(e["resource"]).replace(b'"Patient/p1"', f'"Patient/{pid}"'.encode())
            )
            r["id"] = pid if r["resourceType"] == "Patient" else f"{pid}-{r['id']}"
            resources.append(r)
        out.append((pid, resources))
    return out


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def workers_of(master: int) -> list[int]:
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                stat = (p / "stat").read_text().split()
            except OSError:
                continue
            if int(stat[3]) == master:
                out.append(int(p.name))
    return out


def current_plan(base: str, pid: str) -> dict[str, Any]:
    """What an EHR would prefetch for carePlans and tasks: the current ones of ours."""
    plans = requests.get(
        f"{base}/CarePlan", params={"identifier": f"{CANON}/careplan|{pid}"}, timeout=30
    ).json()
    tasks = requests.get(
        f"{base}/Task",
        params={"identifier": f"{CANON}/task|", "patient": pid, "_count": "200"},
        timeout=30,
    ).json()
    return {"carePlans": plans, "tasks": tasks}


def hook_bodies(
    people: list[tuple[str, list[dict[str, Any]]]],
    base: str,
    plans: dict[str, dict[str, Any]] | None = None,
) -> list[bytes]:
    bodies = []
    for pid, resources in people:

        def of(*types: str, res: list[dict[str, Any]] = resources) -> dict[str, Any]:
            items = [r for r in res if r["resourceType"] in types]
            return {
                "resourceType": "Bundle",
                "type": "searchset",
                "entry": [{"resource": r} for r in items],
            }

        patient = next(r for r in resources if r["resourceType"] == "Patient")
        prefetch: dict[str, Any] = {
            "patient": patient,
            "conditions": of("Condition"),
            "observations": of("Observation"),
            "medicationRequests": of("MedicationRequest", "Medication"),
        }
        # "current": what the EHR holds now (steady state: no write unless the plan changed);
        # "none": the EHR says it holds nothing, so every view reconciles with the server.
        prefetch.update(plans[pid] if plans is not None else {"carePlans": None, "tasks": None})
        bodies.append(
            orjson.dumps(
                {
                    "hook": "patient-view",
                    "hookInstance": str(uuid.uuid4()),
                    "fhirServer": base,
                    "context": {"patientId": pid, "userId": "Practitioner/load"},
                    "prefetch": prefetch,
                }
            )
        )
    return bodies


async def drive(
    port: int, path: str, bodies: list[bytes], tokens: list[str], seconds: float, rate: float
) -> tuple[list[float], int, int]:
    latencies: list[float] = []
    errors = 0
    sent = 0
    start = time.perf_counter()
    tasks: set[asyncio.Task[None]] = set()

    async def one(body: bytes, token: str) -> None:
        nonlocal errors
        latency = await post(port, path, body, token)
        if latency is None:
            errors += 1
        else:
            latencies.append(latency)

    while (now := time.perf_counter()) - start < seconds:
        due = int((now - start) * rate)
        while sent < due and sent < len(tokens):
            task = asyncio.create_task(one(bodies[sent % len(bodies)], tokens[sent]))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            sent += 1
        await asyncio.sleep(0.002)
    await asyncio.gather(*tasks)
    return latencies, errors, sent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--rate", type=float, default=100.0, help="hooks per second")
    parser.add_argument("--patients", type=int, default=40)
    parser.add_argument(
        "--plan-prefetch",
        choices=("current", "none"),
        default="current",
        help="what the hooks say the EHR holds of our plan (see hook_bodies)",
    )
    args = parser.parse_args()
    seconds = min(max(args.seconds, 5.0), 120.0)

    from medplum_server import MedplumServer

    people = patients(args.patients)
    caller = TrustedCaller("https://load.example.org", "load")
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    path = "/cds-services/oud-pathway"
    count = int(seconds * args.rate) + 100
    print(f"signing {count} tokens ...", flush=True)
    tokens = caller.tokens(public + path, count, 900)
    with MedplumServer(ROOT / "fhir_profiles") as fhir, tempfile.TemporaryDirectory() as tmp:
        for _pid, resources in people:
            r = requests.post(
                fhir.base,
                json={
                    "resourceType": "Bundle",
                    "type": "transaction",
                    "entry": [
                        {
                            "resource": x,
                            "request": {"method": "PUT", "url": f"{x['resourceType']}/{x['id']}"},
                        }
                        for x in resources
                    ],
                },
                timeout=60,
            )
            r.raise_for_status()
        clients = Path(tmp) / "clients.json"
        clients.write_bytes(caller.clients_file())
        db = Path(tmp) / "load.db"
        env = {
            **os.environ,
            "PATHWAY_PORT": str(port),
            "PATHWAY_WORKERS": "2",
            "PATHWAY_PUBLIC_URL": public,
            "PATHWAY_CDS_CLIENTS_FILE": str(clients),
            # tokens are signed before the run, for all of it: longer-lived than the 5-minute cap
            "PATHWAY_JWT_MAX_LIFETIME_SECONDS": "900",
            "PATHWAY_DATABASE_URL": f"sqlite:///{db}",
            "PATHWAY_LOG_LEVEL": "WARNING",
            "PATHWAY_WRITEBACK": "direct",
            "PATHWAY_FHIR_ALLOWLIST": fhir.base,
        }
        server = subprocess.Popen(
            [sys.executable, "-m", "pathway.cli", "serve"],
            env=server_env(env),
            cwd=tmp,  # not the checkout: `-m` puts the working directory first on sys.path
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            if not wait_for_port(port, 30):
                raise SystemExit("pathway serve did not start")
            bodies = hook_bodies(people, fhir.base, None)
            # warm-up (also the first write of every patient), then the memory baseline
            asyncio.run(drive(port, path, bodies, tokens[: len(bodies)], 30.0, len(bodies) / 5.0))
            time.sleep(8)  # the background writes of the warm-up land
            if args.plan_prefetch == "current":
                current = {pid: current_plan(fhir.base, pid) for pid, _ in people}
                bodies = hook_bodies(people, fhir.base, current)
            workers = workers_of(server.pid)
            rss_start = {w: rss_kib(w) for w in workers}
            print(
                f"load: {seconds:.0f} s at {args.rate:.0f} hooks/s over {len(people)} patients ...",
                flush=True,
            )
            samples: list[int] = []
            stop = False

            def sample() -> None:
                while not stop:
                    samples.append(sum(rss_kib(w) for w in workers))
                    time.sleep(seconds / 6)

            import threading

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            lat, errors, sent = asyncio.run(
                drive(port, path, bodies, tokens[len(bodies) :], seconds, args.rate)
            )
            stop = True
            rss_end = {w: rss_kib(w) for w in workers}
            # the outbox drains (the sweeper runs every 5 s)
            drained_at = time.time() + 90
            pending = -1
            while time.time() < drained_at:
                with sqlite3.connect(db) as c:
                    pending = c.execute(
                        "SELECT COUNT(*) FROM outbox WHERE status IN ('pending', 'working')"
                    ).fetchone()[0]
                    failed = c.execute(
                        "SELECT COUNT(*) FROM outbox WHERE status = 'failed'"
                    ).fetchone()[0]
                if pending == 0:
                    break
                time.sleep(1)
        finally:
            server.terminate()
            server.wait(timeout=15)
        problems = []
        for pid, _ in people:
            plans = (
                requests.get(
                    f"{fhir.base}/CarePlan",
                    params={"identifier": f"{CANON}/careplan|{pid}"},
                    timeout=10,
                )
                .json()
                .get("entry", [])
            )
            tasks = (
                requests.get(
                    f"{fhir.base}/Task",
                    params={"identifier": f"{CANON}/task|", "patient": pid, "_count": "200"},
                    timeout=10,
                )
                .json()
                .get("entry", [])
            )
            open_codes = [
                t["resource"]["code"]["coding"][0]["code"]
                for t in tasks
                if t["resource"]["status"] == "requested"
            ]
            if len(plans) != 1:
                problems.append(f"{pid}: {len(plans)} CarePlans")
            if len(open_codes) != len(set(open_codes)):
                problems.append(f"{pid}: duplicate open Tasks")
        plans_total = fhir.count("CarePlan")
    lat.sort()
    ok = len(lat)
    print(f"requests sent {sent}, ok {ok}, errors {errors}; achieved {ok / seconds:.0f} req/s")
    if lat:
        print(
            f"latency median {statistics.median(lat):.1f} ms, p99 "
            f"{lat[min(len(lat) - 1, int(len(lat) * 0.99))]:.1f} ms, max {lat[-1]:.1f} ms"
        )
    for w in rss_start:
        print(
            f"worker {w}: RSS {rss_start[w] / 1024:.1f} MiB -> {rss_end.get(w, 0) / 1024:.1f} "
            f"MiB ({(rss_end.get(w, 0) - rss_start[w]) / 1024:+.1f})"
        )
    print("workers' RSS during the run (MiB): " + " ".join(f"{s / 1024:.0f}" for s in samples))
    print(f"outbox after the run: {pending} pending/working, {failed} failed")
    print(
        f"write-back check: {plans_total} CarePlans for {len(people)} patients; "
        + (
            "every patient has exactly one CarePlan and no duplicate open Task"
            if not problems
            else "PROBLEMS: " + "; ".join(problems[:10])
        )
    )


if __name__ == "__main__":
    main()
