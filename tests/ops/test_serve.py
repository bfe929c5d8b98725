"""`pathway serve` for real (gunicorn in a subprocess) from an empty working directory, as
`make run` starts it on a fresh clone: it comes up, answers, and stops cleanly."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import requests

EXAMPLES = Path(__file__).parent.parent.parent / "examples"
HOOK = (EXAMPLES / "patient-view.json").read_bytes()


@dataclass
class Served:
    base: str
    output: bytes = field(default=b"")  # stdout+stderr, once the server has stopped
    pid: int = 0  # the gunicorn master


@contextmanager
def serve(cwd: Path, workers: int) -> Iterator[Served]:
    """Start `pathway serve` (auth off, default store under cwd), wait until ready, stop."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **os.environ,
        "PATHWAY_PORT": str(port),
        "PATHWAY_AUTH_MODE": "off",
        "PATHWAY_WORKERS": str(workers),
    }
    for name in ("PATHWAY_DATABASE_URL", "PROMETHEUS_MULTIPROC_DIR"):
        env.pop(name, None)
    server = subprocess.Popen(
        [sys.executable, "-m", "pathway.cli", "serve"],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    served = Served(f"http://127.0.0.1:{port}", pid=server.pid)
    up = False
    try:
        deadline = time.time() + 60  # generous: a busy CI machine starts gunicorn slowly
        while time.time() < deadline and not up and server.poll() is None:
            try:
                up = requests.get(f"{served.base}/readyz", timeout=5).ok
            except requests.RequestException:  # not up yet (refused, or slow to answer)
                time.sleep(0.2)
        if up:
            yield served
    finally:
        server.terminate()
        served.output, _ = server.communicate(timeout=20)
    if not up:
        tail = served.output.decode(errors="replace")[-3000:]
        raise AssertionError(f"the service did not come up (exit {server.returncode}):\n{tail}")


# Per-request timeouts are generous: a request can wait in the listen queue while a worker boots,
# seconds on a busy CI machine (a hook takes ~20 ms once a worker is up).
ANSWER_TIMEOUT = 60


def call_hook(base: str) -> requests.Response:
    return requests.post(
        f"{base}/cds-services/oud-pathway",
        data=HOOK,
        timeout=ANSWER_TIMEOUT,
        headers={"Content-Type": "application/json", "Connection": "close"},
    )


def test_pathway_serve_starts_and_answers(tmp_path: Path) -> None:
    with serve(tmp_path, workers=1) as served:
        resp = call_hook(served.base)
        assert resp.status_code == 200
        assert resp.json()["cards"][0]["summary"].startswith("OUD pathway:")
        assert (tmp_path / "var" / "pathway.sqlite3").exists()
    out = served.output
    assert b"NOT authenticated" in out  # the loud warning of auth off
    assert b"Traceback" not in out
    lines = [ln for ln in out.decode().splitlines() if ln.strip()]
    assert lines and all(ln.startswith("{") for ln in lines), lines[:3]  # JSON, every line


def test_metrics_add_up_every_worker(tmp_path: Path) -> None:
    """Two workers: /metrics counts the decisions of both, whichever worker answers."""
    with serve(tmp_path, workers=2) as served:
        for _ in range(20):  # new connections: both workers get some
            assert call_hook(served.base).status_code == 200
        for _ in range(4):  # every scrape, whichever worker, sees all 20
            text = requests.get(f"{served.base}/metrics", timeout=ANSWER_TIMEOUT).text
            line = next(ln for ln in text.splitlines() if ln.startswith("pathway_decisions_total{"))
            assert line.endswith(" 20.0"), line


def test_a_worker_that_exits_does_not_take_the_metrics_directory_with_it(tmp_path: Path) -> None:
    """A worker that exits (here: told to stop; also max-requests or a crash) used to run the
    master's clean-up too, deleting the metrics directory the workers share: its replacement
    could not boot and took the service down. Only the master removes it."""
    import signal

    with serve(tmp_path, workers=1) as served:
        assert call_hook(served.base).status_code == 200
        master = served.pid
        (first,) = Path(f"/proc/{master}/task/{master}/children").read_text().split()
        os.kill(int(first), signal.SIGTERM)
        deadline = time.time() + 30
        while time.time() < deadline:  # the master replaces it
            now = Path(f"/proc/{master}/task/{master}/children").read_text().split()
            if len(now) == 1 and first not in now:
                break
            time.sleep(0.2)
        answered = 0
        for _ in range(6):
            try:
                ok = call_hook(served.base).status_code == 200
                ok = (
                    ok
                    and requests.get(f"{served.base}/metrics", timeout=ANSWER_TIMEOUT).status_code
                    == 200
                )
            except requests.ConnectionError:
                time.sleep(0.5)  # the new worker may still be starting
                continue
            answered += ok
    assert b"Worker failed to boot" not in served.output, served.output[-3000:]
    assert answered >= 4, served.output[-3000:]


def test_four_workers_on_a_fresh_store_come_up_on_a_busy_machine(tmp_path: Path) -> None:
    """The store is migrated once, before the workers start: four workers booting at once on a
    fresh SQLite file all come up (two creating tables at once made one fail, and gunicorn stop
    the service). `scripts/serve_starts.py` does this 20 times and prints the figure."""
    import multiprocessing

    sys.path.insert(0, str(EXAMPLES.parent / "scripts"))
    import serve_starts

    stop_at = time.time() + 120
    spinners = [
        multiprocessing.Process(target=serve_starts._spin, args=(stop_at,), daemon=True)
        for _ in range(2)
    ]
    for p in spinners:
        p.start()
    try:
        for _ in range(2):
            up, _seconds, tail = serve_starts.start_once(workers=4)
            assert up, tail
    finally:
        for p in spinners:
            p.terminate()
            p.join()
