"""Running the service for the browser tests: a threaded werkzeug server on loopback (the same
WSGI app `pathway serve` runs), and helpers to put scenario patients on the FHIR server."""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
from flask import Flask
from werkzeug.serving import BaseWSGIServer, make_server

from pathway import create_app
from pathway.config import LoadedConfig
from pathway.service import Service
from pathway.settings import Settings

SCENARIOS = Path(__file__).parent.parent / "data" / "scenarios"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
AXE = Path(__file__).parent / "axe" / "node_modules" / "axe-core" / "axe.min.js"
SCREENSHOTS = Path(__file__).resolve().parent.parent.parent / "build" / "screenshots"


def _placeholder(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
    return [b"starting"]


class ServiceServer:
    """The service on 127.0.0.1 (a free port), with the app enabled for `iss`."""

    def __init__(self, tmp: Path, config: LoadedConfig, allow: list[str], **extra: str) -> None:
        self._server: BaseWSGIServer = make_server("127.0.0.1", 0, _placeholder, threaded=True)
        self.origin = f"http://127.0.0.1:{self._server.server_port}"
        settings = Settings.from_mapping(
            {
                "PATHWAY_AUTH_MODE": "off",
                "PATHWAY_PUBLIC_URL": self.origin,
                "PATHWAY_DATABASE_URL": f"sqlite:///{tmp / 'app.sqlite3'}",
                "PATHWAY_FHIR_ALLOWLIST": ",".join(allow),
                "PATHWAY_SMART_APP_CLIENT_ID": "oud-pathway-app",
                "PATHWAY_HTTP_TIMEOUT_SECONDS": "10",
                **extra,
            }
        )
        self.app: Flask = create_app(
            {"settings": settings, "config": config, "START_OUTBOX": False}
        )
        self._server.app = self.app
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def svc(self) -> Service:
        service: Service = self.app.extensions["pathway"]
        return service

    def __enter__(self) -> ServiceServer:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self.svc.writeback.stop()


def _rewrite(node: Any, prefix: str) -> Any:
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if k == "reference" and isinstance(v, str) and v.count("/") == 1:
                t, i = v.split("/")
                out[k] = f"{t}/{prefix}{i}"
            else:
                out[k] = _rewrite(v, prefix)
        return out
    if isinstance(node, list):
        return [_rewrite(x, prefix) for x in node]
    return node


def prefixed(resources: list[dict[str, Any]], prefix: str) -> list[dict[str, Any]]:
    """The resources with every id and relative reference prefixed (scenarios all use p1)."""
    out = []
    for r in resources:
        r2 = _rewrite(copy.deepcopy(r), prefix)
        r2["id"] = f"{prefix}{r['id']}"
        out.append(r2)
    return out


CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"


def categorised(resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Observations as an EHR holds them: with a category (the app, like the hook's prefetch,
    searches Observations by category, which EHRs such as Epic require). Scenario files leave
    some out; an uncategorised one would not be read, and the page would rightly differ."""
    out = []
    for r in resources:
        if r.get("resourceType") == "Observation" and not r.get("category"):
            r = {**r, "category": [{"coding": [{"system": CATEGORY, "code": "laboratory"}]}]}
        out.append(r)
    return out


def seed(fhir_base: str, resources: list[dict[str, Any]]) -> None:
    entries = [
        {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
        for r in resources
    ]
    # Medplum (like real servers) takes at most 50 updates in one transaction.
    for i in range(0, len(entries), 50):
        resp = requests.post(
            fhir_base,
            json={"resourceType": "Bundle", "type": "transaction", "entry": entries[i : i + 50]},
            timeout=60,
        )
        assert resp.status_code == 200, resp.text[:2000]


def parse_time(text: str) -> datetime:
    when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return when if when.tzinfo else when.replace(tzinfo=UTC)
