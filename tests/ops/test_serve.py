"""`pathway serve` for real (gunicorn in a subprocess) from an empty working directory, as
`make run` starts it on a fresh clone: it comes up, answers, and stops cleanly."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

EXAMPLES = Path(__file__).parent.parent.parent / "examples"


def test_pathway_serve_starts_and_answers(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **os.environ,
        "PATHWAY_PORT": str(port),
        "PATHWAY_AUTH_MODE": "off",
        "PATHWAY_WORKERS": "1",
    }
    env.pop("PATHWAY_DATABASE_URL", None)
    server = subprocess.Popen(
        [sys.executable, "-m", "pathway.cli", "serve"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.time() + 30
        up = False
        while time.time() < deadline and not up:
            try:
                up = requests.get(f"http://127.0.0.1:{port}/readyz", timeout=5).ok
            except requests.RequestException:  # not up yet (refused, or slow to answer)
                time.sleep(0.2)
        assert up, "the service did not come up"
        resp = requests.post(
            f"http://127.0.0.1:{port}/cds-services/oud-pathway",
            data=(EXAMPLES / "patient-view.json").read_bytes(),
            headers={"Content-Type": "application/json"},
            timeout=10,
        )
        assert resp.status_code == 200
        assert resp.json()["cards"][0]["summary"].startswith("OUD pathway:")
        assert (tmp_path / "var" / "pathway.sqlite3").exists()
    finally:
        server.terminate()
        out, _ = server.communicate(timeout=20)
    assert b"NOT authenticated" in out  # the loud warning of auth off
    assert b"Traceback" not in out
    lines = [ln for ln in out.decode().splitlines() if ln.strip()]
    assert lines and all(ln.startswith("{") for ln in lines), lines[:3]  # JSON, every line


def test_metrics_add_up_every_worker(tmp_path: Path) -> None:
    """Two workers: /metrics counts the decisions of both, whichever worker answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **os.environ,
        "PATHWAY_PORT": str(port),
        "PATHWAY_AUTH_MODE": "off",
        "PATHWAY_WORKERS": "2",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    server = subprocess.Popen(
        [sys.executable, "-m", "pathway.cli", "serve"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                if requests.get(f"{base}/readyz", timeout=5).ok:
                    break
            except requests.RequestException:  # not up yet (refused, or slow to answer)
                time.sleep(0.2)
        body = (EXAMPLES / "patient-view.json").read_bytes()
        for _ in range(20):  # new connections: both workers get some
            assert (
                requests.post(
                    f"{base}/cds-services/oud-pathway",
                    data=body,
                    timeout=10,
                    headers={"Content-Type": "application/json", "Connection": "close"},
                ).status_code
                == 200
            )
        for _ in range(4):  # every scrape, whichever worker, sees all 20
            text = requests.get(f"{base}/metrics", timeout=5).text
            line = next(ln for ln in text.splitlines() if ln.startswith("pathway_decisions_total{"))
            assert line.endswith(" 20.0"), line
    finally:
        server.terminate()
        server.communicate(timeout=20)
