"""Benchmark: the pathway decision, the FHIR output and the CDS Hooks call.

    python scripts/benchmark.py [--iterations N] [--seconds S] [--skip-server]

1. Request bytes -> decision, and -> CarePlan/Task Bundle bytes, for synthetic patients of 100
   and 500 resources (conditions, drug screens in every result form, labs, vitals, COWS,
   medication requests). Targets: 100 resources <= 1.5 ms median, 500 <= 6 ms.
2. The patient-view hook in process (request bytes -> response bytes through the Flask app),
   100 and 500 resources of prefetch. Targets: 100 <= 2 ms median and <= 10 ms p99; 500 <= 6 ms.
3. The same hook through `pathway serve` (gunicorn, 2 sync workers) on loopback, with JWT
   verification on (RS384, a fresh jti per request), for a bounded run (default 15 s) from an
   asyncio client in this process. Target: >= 1,000 requests/s with p99 <= 20 ms.

Figures are printed, never asserted: they depend on the machine (2 cores here, shared by the
server and the load generator). The first line says which build is measured: `make bench` runs
this with PYTHONPATH=build/compiled (the mypyc-compiled production build, `make compiled`);
run directly, it measures the source as it is.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

# The checkout goes last: PYTHONPATH=build/compiled (`make bench`) measures the compiled build.
sys.path.append(str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from loopback import TrustedCaller, free_port, post, server_env, wait_for_port
from probe import describe as machine_probe

from pathway.config import load_config
from pathway.evaluation import Evaluator

AS_OF = datetime(2025, 6, 15, 12, tzinfo=UTC)
CANON = "https://oud-pathway.github.io/fhir"
UDS = ["59673-4", "19295-5", "3414-0", "19550-3", "93495-0", "10998-3", "3349-8"]
RESULTS: list[dict[str, Any]] = [
    {"valueString": "POS"},
    {"valueString": "neg"},
    {"valueString": "Not Detected"},
    {
        "valueCodeableConcept": {
            "coding": [{"system": "http://snomed.info/sct", "code": "260385009"}]
        }
    },
    {"interpretation": [{"coding": [{"code": "NEG"}]}]},
]
MEDS = ["1010604", "864706", "1049621", "308047", "197591", "310965"]


def patient_bundle(n: int) -> dict[str, Any]:
    """One patient with about n resources."""
    entries: list[dict[str, Any]] = [
        {
            "resource": {
                "resourceType": "Patient",
                "id": "p1",
                "gender": "female",
                "birthDate": "1988-03-02",
            }
        }
    ]

    def add(r: dict[str, Any]) -> None:
        r["id"] = f"{r['resourceType'][:3].lower()}-{len(entries)}"
        r["subject"] = {"reference": "Patient/p1"}
        entries.append(
            {
                "fullUrl": f"https://ehr.example.org/fhir/{r['resourceType']}/{r['id']}",
                "resource": r,
            }
        )

    add(
        {
            "resourceType": "Condition",
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "F11.20"}]},
            "clinicalStatus": {"coding": [{"code": "active"}]},
            "recordedDate": "2024-01-10",
        }
    )
    i = 0
    while len(entries) < n:
        when = (AS_OF - timedelta(days=i % 400, hours=i % 24)).isoformat()
        kind = i % 10
        if kind < 4:
            add(
                {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"coding": [{"system": "http://loinc.org", "code": UDS[i % len(UDS)]}]},
                    "effectiveDateTime": when,
                    **RESULTS[i % len(RESULTS)],
                }
            )
        elif kind < 6:
            add(
                {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {
                        "coding": [
                            {
                                "system": "http://loinc.org",
                                "code": ["1742-6", "8480-6", "8867-4", "2160-0"][i % 4],
                            }
                        ]
                    },
                    "effectiveDateTime": when,
                    "valueQuantity": {"value": 40 + i % 50},
                }
            )
        elif kind == 6:
            add(
                {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {
                        "coding": [
                            {"system": f"{CANON}/CodeSystem/oud-observation", "code": "cows-total"}
                        ]
                    },
                    "effectiveDateTime": when,
                    "valueInteger": i % 20,
                }
            )
        elif kind < 9:
            add(
                {
                    "resourceType": "MedicationRequest",
                    "status": ["active", "completed"][i % 2],
                    "intent": "order",
                    "authoredOn": when[:10],
                    "medicationCodeableConcept": {
                        "coding": [
                            {
                                "system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                "code": MEDS[i % len(MEDS)],
                            }
                        ]
                    },
                }
            )
        else:
            add(
                {
                    "resourceType": "Condition",
                    "code": {
                        "coding": [{"system": "http://snomed.info/sct", "code": str(38341003 + i)}]
                    },
                    "clinicalStatus": {"coding": [{"code": "active"}]},
                    "recordedDate": when[:10],
                }
            )
        i += 1
    return {"resourceType": "Bundle", "type": "searchset", "entry": entries}


def measure(fn: Callable[[], Any], iterations: int) -> tuple[float, float]:
    for _ in range(min(50, iterations)):
        fn()
    samples = []
    for _ in range(iterations):
        t0 = time.perf_counter_ns()
        fn()
        samples.append((time.perf_counter_ns() - t0) / 1e6)
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, int(len(samples) * 0.99))]


def build() -> str:
    import pathway

    if pathway.build() == "compiled":
        return "compiled with mypyc (production)"
    return "pure Python (`make bench` measures the compiled build)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=15.0, help="gunicorn run (10-20 s)")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--skip-server", action="store_true")
    args = parser.parse_args()
    print(f"pathway build: {build()}")
    print(machine_probe())
    evaluator = Evaluator(load_config())
    gc.collect()
    gc.freeze()  # as the gunicorn workers do after start
    print(f"{'resources':>9}  {'step':<34} {'median ms':>10} {'p99 ms':>8}")
    for n, target in ((100, 1.5), (500, 6.0)):
        raw = orjson.dumps(patient_bundle(n))
        iterations = args.iterations if n == 100 else max(200, args.iterations // 4)

        def to_decision(raw: bytes = raw) -> Any:
            return evaluator.evaluate(orjson.loads(raw), AS_OF).decision

        def to_fhir(raw: bytes = raw) -> bytes:
            ev = evaluator.evaluate(orjson.loads(raw), AS_OF)
            return orjson.dumps(evaluator.apply_bundle(ev))

        med, p99 = measure(to_decision, iterations)
        print(
            f"{n:>9}  {'bytes -> decision':<34} {med:>10.3f} {p99:>8.3f}"
            f"   (target <= {target} ms median)"
        )
        med, p99 = measure(to_fhir, iterations)
        print(f"{n:>9}  {'bytes -> CarePlan/Task Bundle bytes':<34} {med:>10.3f} {p99:>8.3f}")
    hooks_in_process(args.iterations)
    app_page(max(200, args.iterations // 4))
    if not args.skip_server:
        hooks_through_gunicorn(min(max(args.seconds, 1.0), 60.0), args.concurrency)
        write_back()


def write_back(runs: int = 20) -> None:
    """Hook -> CarePlan and Tasks stored on the loopback FHIR server (Medplum, the integration
    tests' server), then the same evaluation again (reads only, nothing written)."""
    import shutil
    import tempfile

    import requests

    root = Path(__file__).resolve().parent.parent
    if not (root / "tests" / "fhirserver" / "node_modules").is_dir() or not shutil.which("node"):
        print("      write-back: skipped (run `make setup` for the loopback FHIR server)")
        return
    sys.path.insert(0, str(root / "tests"))
    from medplum_server import MedplumServer

    from pathway import create_app
    from pathway.settings import Settings

    case = orjson.loads(
        (root / "tests" / "data" / "scenarios" / "oud-dx-no-moud.json").read_bytes()
    )
    as_of = datetime.fromisoformat(case["asOf"].replace("Z", "+00:00"))
    first: list[float] = []
    second: list[float] = []
    with MedplumServer(root / "fhir_profiles") as fhir, tempfile.TemporaryDirectory() as tmp:
        app = create_app(
            {
                "settings": Settings.from_mapping(
                    {
                        "PATHWAY_AUTH_MODE": "off",
                        "PATHWAY_DATABASE_URL": f"sqlite:///{tmp}/w.db",
                        "PATHWAY_FHIR_ALLOWLIST": fhir.base,
                        "PATHWAY_WRITEBACK": "direct",
                        "PATHWAY_LOG_LEVEL": "ERROR",
                    }
                ),
                "START_OUTBOX": False,
            }
        )
        svc = app.extensions["pathway"]
        svc.clock = lambda: as_of
        client = app.test_client()
        body = {
            "hook": "patient-view",
            "hookInstance": "b",
            "fhirServer": fhir.base,
            "context": {"patientId": "p1"},
        }
        for _ in range(runs):
            fhir.reset()
            requests.post(
                fhir.base,
                json={
                    "resourceType": "Bundle",
                    "type": "transaction",
                    "entry": [
                        {
                            "resource": e["resource"],
                            "request": {
                                "method": "PUT",
                                "url": f"{e['resource']['resourceType']}/{e['resource']['id']}",
                            },
                        }
                        for e in case["bundle"]["entry"]
                    ],
                },
                timeout=30,
            )
            for bucket in (first, second):
                t0 = time.perf_counter()
                assert client.post("/cds-services/oud-pathway", json=body).status_code == 200
                svc.writeback.drain()
                bucket.append((time.perf_counter() - t0) * 1000)
        stored = fhir.count("Task")
    for name, xs in (
        ("hook -> CarePlan+Tasks stored", first),
        ("same evaluation again (no write)", second),
    ):
        xs.sort()
        print(
            f"{'1 pt':>9}  {name:<34} {statistics.median(xs):>10.1f} {xs[-1]:>8.1f}"
            f"   ms, {runs} runs (max shown as p99); {stored} Tasks stored"
        )


def hook_body(n: int) -> bytes:
    entries = patient_bundle(n)["entry"]

    def searchset(*types: str) -> dict[str, Any]:
        items = [e for e in entries if e["resource"]["resourceType"] in types]
        return {"resourceType": "Bundle", "type": "searchset", "entry": items}

    return orjson.dumps(
        {
            "hook": "patient-view",
            "hookInstance": "bench",
            "context": {"userId": "Practitioner/1", "patientId": "p1"},
            "prefetch": {
                "patient": entries[0]["resource"],
                "conditions": searchset("Condition"),
                "observations": searchset("Observation"),
                "medicationRequests": searchset("MedicationRequest"),
                "carePlans": None,
                "tasks": None,
            },
        }
    )


def hooks_in_process(iterations: int) -> None:
    import tempfile

    from pathway import create_app
    from pathway.settings import Settings

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings.from_mapping(
            {
                "PATHWAY_AUTH_MODE": "off",
                "PATHWAY_DATABASE_URL": f"sqlite:///{tmp}/b.db",
                "PATHWAY_LOG_LEVEL": "ERROR",
            }
        )
        app = create_app({"settings": settings})
        app.extensions["pathway"].clock = lambda: AS_OF
        client = app.test_client()
        for n, target in ((100, "<= 2 ms median, <= 10 ms p99"), (500, "<= 6 ms median")):
            body = hook_body(n)

            def call(body: bytes = body) -> bytes:
                resp = client.post(
                    "/cds-services/oud-pathway", data=body, content_type="application/json"
                )
                assert resp.status_code == 200, resp.status_code
                return resp.get_data()

            gc.collect()
            med, p99 = measure(call, iterations if n == 100 else max(200, iterations // 4))
            print(
                f"{n:>9}  {'patient-view hook, in process':<34} {med:>10.3f} {p99:>8.3f}"
                f"   (target {target})"
            )


# ---------------------------------------------------------------- the clinician's app (separate)
def app_page(iterations: int) -> None:
    """The clinician's app page (GET /app/) without its FHIR reads: the hook's evaluation, the
    view (timeline, evidence index) and the HTML template, for patients of 100 and 500
    resources. The reads from the EHR come on top (6 searches, as for a hook without prefetch)."""
    import tempfile

    from pathway import create_app
    from pathway.app.routes import render_page
    from pathway.settings import Settings

    print("\nthe clinician's app (GET /app/: evaluation, view and HTML; FHIR reads aside)")
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings.from_mapping(
            {
                "PATHWAY_DATABASE_URL": f"sqlite:///{tmp}/b.db",
                "PATHWAY_LOG_LEVEL": "ERROR",
                "PATHWAY_SMART_APP_CLIENT_ID": "bench",
            }
        )
        app = create_app({"settings": settings})
        svc = app.extensions["pathway"]
        for n in (100, 500):
            data = [patient_bundle(n)]
            sizes: list[int] = []

            def page(data: list[Any] = data, sizes: list[int] = sizes) -> None:
                with app.test_request_context("/app/"):
                    html, _ = render_page(
                        svc, data, "p1", AS_OF, "now", "x" * 43, "patient/*.rs", "", ""
                    )
                sizes.append(len(html))

            gc.collect()
            med, p99 = measure(page, iterations if n == 100 else max(100, iterations // 4))
            print(
                f"{n:>9}  {'app page, server side':<34} {med:>10.3f} {p99:>8.3f}"
                f"   ({sizes[-1] // 1024} KB of HTML)"
            )


def hooks_through_gunicorn(seconds: float, concurrency: int) -> None:
    import asyncio
    import os
    import shutil
    import subprocess
    import tempfile

    caller = TrustedCaller("https://bench.example.org", "bench")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    path = "/cds-services/oud-pathway"
    body = hook_body(100)
    count = int(seconds * 1600) + 1000  # more than the run can use: no token is reused
    tokens = caller.tokens(base + path, count, 600)
    with tempfile.TemporaryDirectory() as tmp:
        clients = Path(tmp) / "clients.json"
        clients.write_bytes(caller.clients_file())
        env = {
            **os.environ,
            "PATHWAY_PORT": str(port),
            "PATHWAY_WORKERS": "2",
            "PATHWAY_PUBLIC_URL": base,
            "PATHWAY_CDS_CLIENTS_FILE": str(clients),
            # tokens are signed before the run, for all of it: longer-lived than the 5-minute cap
            "PATHWAY_JWT_MAX_LIFETIME_SECONDS": "600",
            "PATHWAY_DATABASE_URL": f"sqlite:///{tmp}/g.db",
            "PATHWAY_LOG_LEVEL": "ERROR",
        }
        probe = subprocess.run(
            [sys.executable, "-c", "import pathway; print(pathway.build())"],
            env=server_env(env),
            cwd=tmp,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        kind = "compiled" if probe == "compiled" else "pure Python"
        print(f"      gunicorn workers run the {kind} build")
        server = subprocess.Popen(
            [sys.executable, "-m", "pathway.cli", "serve"],
            env=server_env(env),
            cwd=tmp,  # not the checkout: `-m` puts the working directory first on sys.path
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            if not wait_for_port(port, 20):
                print(f"{100:>9}  patient-view via gunicorn: the server did not start")
                return
            wrk = shutil.which("wrk")
            result: str | tuple[list[float], int, float]
            if wrk:
                result = _wrk(wrk, port, path, body, tokens, seconds, concurrency, Path(tmp))
            else:
                result = asyncio.run(_load(port, path, body, tokens, seconds, concurrency))
        finally:
            server.terminate()
            server.wait(timeout=10)
    if isinstance(result, str):
        print(
            f"{100:>9}  {'patient-view via gunicorn + JWT':<34} {result}"
            "   (target >= 1,000 req/s, p99 <= 20 ms)"
        )
        return
    lat, errors, elapsed = result
    lat.sort()
    rate = len(lat) / elapsed if elapsed else 0.0
    p50 = statistics.median(lat) if lat else float("nan")
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] if lat else float("nan")
    print(
        f"{100:>9}  {'patient-view via gunicorn + JWT':<34} {p50:>10.3f} {p99:>8.3f}"
        f"   {rate:,.0f} req/s over {elapsed:.1f} s, {len(lat)} ok, {errors} errors, "
        f"{concurrency} connections (target >= 1,000 req/s, p99 <= 20 ms)"
    )


WRK_SCRIPT = """
local tokens = {}
for line in io.lines(os.getenv("BENCH_TOKENS")) do tokens[#tokens + 1] = line end
local f = io.open(os.getenv("BENCH_BODY"), "rb"); local body = f:read("*all"); f:close()
local i = 0
request = function()
  i = i + 1
  if i > #tokens then i = 1 end
  return wrk.format("POST", os.getenv("BENCH_PATH"), {
    ["Authorization"] = "Bearer " .. tokens[i], ["Content-Type"] = "application/json"}, body)
end
"""


def _wrk(
    wrk: str,
    port: int,
    path: str,
    body: bytes,
    tokens: list[str],
    seconds: float,
    concurrency: int,
    tmp: Path,
) -> str:
    """wrk (C, one thread so each token is used once) drives the load; returns its figures."""
    import os
    import re
    import subprocess

    (tmp / "tokens.txt").write_text("\n".join(tokens) + "\n")
    (tmp / "body.json").write_bytes(body)
    (tmp / "hook.lua").write_text(WRK_SCRIPT)
    env = {
        **os.environ,
        "BENCH_TOKENS": str(tmp / "tokens.txt"),
        "BENCH_BODY": str(tmp / "body.json"),
        "BENCH_PATH": path,
    }
    out = subprocess.run(
        [
            wrk,
            "-t1",
            f"-c{concurrency}",
            f"-d{int(seconds)}s",
            "--latency",
            "-s",
            str(tmp / "hook.lua"),
            f"http://127.0.0.1:{port}{path}",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=seconds + 30,
        check=False,
    ).stdout

    def grab(pattern: str) -> str:
        m = re.search(pattern, out)
        return m.group(1) if m else "?"

    total = grab(r"(\d+) requests in")
    non2xx = grab(r"Non-2xx or 3xx responses: (\d+)")
    p50, p99 = grab(r"(?m)^\s+50%\s+(\S+)"), grab(r"(?m)^\s+99%\s+(\S+)")
    rate = grab(r"Requests/sec:\s+(\S+)")
    return (
        f"{p50:>10} {p99:>8}   {rate} req/s (wrk, {concurrency} connections, "
        f"{int(seconds)} s, {total} requests, non-2xx: {non2xx if non2xx != '?' else 0})"
    )


async def _load(
    port: int, path: str, body: bytes, tokens: list[str], seconds: float, concurrency: int
) -> tuple[list[float], int, float]:
    import asyncio

    latencies: list[float] = []
    errors = 0
    it = iter(tokens)
    start = time.perf_counter()
    stop = start + seconds

    async def worker() -> None:
        nonlocal errors
        while time.perf_counter() < stop:
            token = next(it, None)
            if token is None:
                return
            latency = await post(port, path, body, token)
            if latency is None:
                errors += 1
            else:
                latencies.append(latency)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, errors, time.perf_counter() - start


if __name__ == "__main__":
    main()
