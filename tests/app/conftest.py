"""Fixtures of the clinician's app tests: the loopback FHIR server (Medplum), the test EHR's
SMART authorization server in front of it, the service on a real port, and one headless Chromium
(Playwright) for the whole run."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from medplum_server import MedplumServer, server_available

from app.ehr import FakeEhr
from app.harness import AXE, CHROMIUM, CHROMIUM_ARGS, SCREENSHOTS, ServiceServer
from pathway.config import DEFAULT_PROFILES_DIR, LoadedConfig


def _need(condition: bool, why: str) -> None:
    if not condition:
        if os.environ.get("CI"):
            pytest.fail(f"the browser tests cannot run in CI: {why}")
        pytest.skip(why)


@pytest.fixture(scope="session")
def medplum() -> Iterator[MedplumServer]:
    why = server_available()
    _need(why is None, why or "")
    with MedplumServer(DEFAULT_PROFILES_DIR, page_size=200) as s:
        yield s


@pytest.fixture(scope="session")
def ehr(medplum: MedplumServer) -> Iterator[FakeEhr]:
    with FakeEhr(medplum.base, "oud-pathway-app", redirect_uri="") as e:
        yield e


@pytest.fixture(scope="session")
def service(
    tmp_path_factory: pytest.TempPathFactory, config: LoadedConfig, ehr: FakeEhr
) -> Iterator[ServiceServer]:
    with ServiceServer(tmp_path_factory.mktemp("app"), config, [ehr.iss]) as s:
        ehr.redirect_uri = f"{s.origin}/app/callback"  # registered with the EHR
        yield s


@pytest.fixture
def fresh_ehr(ehr: FakeEhr) -> Iterator[FakeEhr]:
    """The EHR with its default behaviour restored after the test."""
    yield ehr
    ehr.fail_token = None
    ehr.issue_refresh = True
    ehr.token_seconds = 3600
    ehr.v2 = True
    from app.ehr import ALL_SCOPES

    ehr.grantable = ALL_SCOPES


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    _need(Path(CHROMIUM).exists(), f"{CHROMIUM} is missing (apt-get install chromium)")
    _need(AXE.exists(), "axe-core is missing (npm ci --prefix tests/app/axe)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 720})
    pg = context.new_page()
    pg.csp_errors = []

    def on_console(msg: Any) -> None:
        if "Content Security Policy" in msg.text or "Refused to" in msg.text:
            pg.csp_errors.append(msg.text)

    pg.on("console", on_console)
    yield pg
    context.close()


_AXE_SOURCE: list[str] = []


def axe(page: Any) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the page as it is now (WCAG 2.1 A/AA)."""
    if not _AXE_SOURCE:
        _AXE_SOURCE.append(AXE.read_text(encoding="utf-8"))
    # Evaluated through the DevTools protocol: the page's CSP (script-src 'self') stays on.
    page.evaluate(f"() => {{ {_AXE_SOURCE[0]}\n; window.__axe = axe; }}")
    result = page.evaluate(
        """async () => {
            const r = await window.__axe.run(document, {
                runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']},
            });
            return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))}));
        }"""
    )
    return [v for v in result if v["impact"] in ("serious", "critical")]


def shoot(page: Any, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def check_state(page: Any, name: str) -> None:
    """Every page state: zero serious or critical axe violations, no CSP refusal, a screenshot."""
    violations = axe(page)
    shoot(page, name)
    assert violations == [], f"{name}: {violations}"
    assert page.csp_errors == [], f"{name}: {page.csp_errors}"


def wait_main(page: Any) -> None:
    page.wait_for_selector("main", timeout=30_000)


class Timer:
    def __init__(self) -> None:
        self.t = time.perf_counter()

    def __call__(self) -> float:
        return time.perf_counter() - self.t
