"""Start `pathway serve` N times on a fresh database each time, with W workers, while the machine
is kept busy, and count how often it comes up (every worker booted, /readyz ready, a hook
answered). Prints the figure; exits 1 if any start failed.

    python scripts/serve_starts.py [--starts 20] [--workers 4] [--busy 2]

`--busy N` runs N processes that spin the CPU for the whole run (a busy machine is what made two
workers creating tables at once fail to boot before the store was migrated before the workers
started).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
HOOK = (ROOT / "examples" / "patient-view.json").read_bytes()


def _spin(stop_at: float) -> None:
    x = 0
    while time.time() < stop_at:
        x += 1


def start_once(workers: int, timeout: float = 90.0) -> tuple[bool, float, str]:
    """One start on a fresh SQLite file: (came up, seconds, output tail when it did not)."""
    with tempfile.TemporaryDirectory(prefix="pathway-start-") as tmp, socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        env = {
            **os.environ,
            "PATHWAY_PORT": str(port),
            "PATHWAY_AUTH_MODE": "off",
            "PATHWAY_WORKERS": str(workers),
            "PATHWAY_DATABASE_URL": f"sqlite:///{tmp}/var/pathway.sqlite3",
        }
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        started = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-m", "pathway.cli", "serve"],
            cwd=tmp,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        up = False
        base = f"http://127.0.0.1:{port}"
        try:
            while time.monotonic() - started < timeout and proc.poll() is None:
                try:
                    ready = requests.get(f"{base}/readyz", timeout=5).ok
                    answered = ready and (
                        requests.post(
                            f"{base}/cds-services/oud-pathway",
                            data=HOOK,
                            headers={"Content-Type": "application/json"},
                            timeout=10,
                        ).status_code
                        == 200
                    )
                except requests.RequestException:
                    answered = False
                if answered:
                    # every worker booted: none exited (gunicorn would stop the service)
                    time.sleep(1.0)
                    up = proc.poll() is None
                    break
                time.sleep(0.2)
        finally:
            seconds = time.monotonic() - started
            proc.terminate()
            out, _ = proc.communicate(timeout=30)
        tail = "" if up else out.decode(errors="replace")[-2000:]
        booted = out.count(b"Booting worker")
        if up and booted < workers:
            return False, seconds, f"only {booted} of {workers} workers booted"
        return up, seconds, tail


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--starts", type=int, default=20)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--busy", type=int, default=2, help="CPU-spinning processes meanwhile")
    args = parser.parse_args(argv)
    stop_at = time.time() + 3600
    spinners = [
        multiprocessing.Process(target=_spin, args=(stop_at,), daemon=True)
        for _ in range(args.busy)
    ]
    for p in spinners:
        p.start()
    ok = 0
    times: list[float] = []
    try:
        for i in range(args.starts):
            up, seconds, tail = start_once(args.workers)
            times.append(seconds)
            ok += up
            print(f"start {i + 1:>2}: {'up' if up else 'FAILED'} in {seconds:.1f} s", flush=True)
            if not up:
                print(tail, flush=True)
    finally:
        for p in spinners:
            p.terminate()
            p.join()
    times.sort()
    print(
        f"pathway serve, {args.workers} workers, fresh SQLite store, {args.busy} busy CPU "
        f"processes: came up {ok}/{args.starts} times; median {times[len(times) // 2]:.1f} s, "
        f"slowest {times[-1]:.1f} s"
    )
    return 0 if ok == args.starts else 1


if __name__ == "__main__":
    raise SystemExit(main())
