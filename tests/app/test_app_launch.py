"""SMART App Launch against the test EHR (a real authorization server in front of the loopback
FHIR server), one test per way a launch can fail, and what a good launch leaves in the browser."""

from __future__ import annotations

import base64
import hashlib
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import pytest
import requests
from medplum_server import MedplumServer

from app.conftest import check_state, wait_main
from app.ehr import FakeEhr
from app.harness import ServiceServer, seed

pytestmark = pytest.mark.browser


def start(
    service: ServiceServer, ehr: FakeEhr, patient: str, **kw: Any
) -> tuple[requests.Session, str]:
    """The app's launch redirect: (the browser's cookie jar, the authorize URL)."""
    s = requests.Session()
    launch = ehr.new_launch(patient, **kw)
    r = s.get(
        f"{service.origin}/app/launch",
        params={"iss": ehr.iss, "launch": launch},
        allow_redirects=False,
        timeout=30,
    )
    assert r.status_code == 302, r.text
    return s, r.headers["Location"]


def q(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


@pytest.fixture(scope="module")
def patient(ehr: FakeEhr) -> str:
    seed(ehr.fhir_upstream, [{"resourceType": "Patient", "id": "launch-1"}])
    return "launch-1"


def test_ehr_launch_redirects_with_pkce_state_scopes_and_aud(
    service: ServiceServer, fresh_ehr: FakeEhr, patient: str
) -> None:
    s, url = start(service, fresh_ehr, patient)
    p = q(url)
    assert url.startswith(f"{fresh_ehr.origin}/auth/authorize?")
    assert p["response_type"] == "code"
    assert p["client_id"] == "oud-pathway-app"
    assert p["redirect_uri"] == f"{service.origin}/app/callback"
    assert p["aud"] == fresh_ehr.iss
    assert p["code_challenge_method"] == "S256"
    assert len(p["code_challenge"]) == 43
    assert len(p["state"]) >= 32
    assert p["launch"]
    assert p["scope"].split()[:4] == ["launch", "openid", "fhirUser", "patient/*.rs"]
    cookie = next(c for c in s.cookies if c.name == "pathway_app")
    assert cookie.has_nonstandard_attr("HttpOnly")
    assert cookie.path == "/app"
    # the cookie is all the browser holds: a random value, no token in it
    assert len(cookie.value or "") < 60
    r = s.get(url, allow_redirects=False, timeout=30)
    assert r.status_code == 302
    r = s.get(r.headers["Location"], allow_redirects=False, timeout=30)
    assert r.status_code == 302 and r.headers["Location"] == "/app/"
    assert "SameSite=Lax" in r.headers["Set-Cookie"] and "HttpOnly" in r.headers["Set-Cookie"]
    page = s.get(f"{service.origin}/app/", timeout=30)
    assert page.status_code == 200
    assert f'data-patient="{patient}"' in page.text
    for token in fresh_ehr.tokens:
        assert token not in page.text
    # The form POST to the token endpoint: code, redirect_uri, verifier, client_id (public).
    form = fresh_ehr.token_requests[-1]
    assert form["grant_type"] == "authorization_code"
    assert form["client_id"] == "oud-pathway-app"
    assert form["redirect_uri"] == f"{service.origin}/app/callback"
    digest = hashlib.sha256(form["code_verifier"].encode()).digest()
    assert base64.urlsafe_b64encode(digest).rstrip(b"=").decode() == p["code_challenge"]


def test_v1_server_gets_v1_scopes(service: ServiceServer, fresh_ehr: FakeEhr, patient: str) -> None:
    fresh_ehr.v2 = False
    _, url = start(service, fresh_ehr, patient)
    scope = q(url)["scope"].split()
    assert "patient/*.read" in scope and "patient/*.rs" not in scope


def test_iss_not_allowed_is_400_and_no_outbound_request(
    service: ServiceServer, medplum: MedplumServer
) -> None:
    with FakeEhr(medplum.base, "oud-pathway-app", f"{service.origin}/app/callback") as other:
        r = requests.get(
            f"{service.origin}/app/launch",
            params={"iss": other.iss, "launch": other.new_launch("x")},
            allow_redirects=False,
            timeout=30,
        )
        assert r.status_code == 400
        assert "allow-list" in r.text
        assert other.calls == []  # not even the discovery document was asked for


def test_bad_state_and_reused_state_are_refused(
    service: ServiceServer, fresh_ehr: FakeEhr, patient: str
) -> None:
    s, url = start(service, fresh_ehr, patient)
    r = s.get(url, allow_redirects=False, timeout=30)
    callback = r.headers["Location"]
    p = q(callback)
    wrong = f"{service.origin}/app/callback?" + urlencode({"code": p["code"], "state": "forged"})
    r = s.get(wrong, allow_redirects=False, timeout=30)
    assert r.status_code == 400
    assert "not valid" in r.text
    # the right state from another browser (no session cookie): refused
    r = requests.get(callback, allow_redirects=False, timeout=30)
    assert r.status_code == 400
    # the right state in the right browser: once, and only once
    r = s.get(callback, allow_redirects=False, timeout=30)
    assert r.status_code == 302
    r = s.get(callback, allow_redirects=False, timeout=30)
    assert r.status_code == 400
    assert fresh_ehr.token_requests[-1]["code"] == p["code"]


def test_pkce_mismatch_is_refused_by_the_ehr_and_shown(
    service: ServiceServer, fresh_ehr: FakeEhr, patient: str
) -> None:
    s, url = start(service, fresh_ehr, patient)
    p = q(url)
    other = base64.urlsafe_b64encode(hashlib.sha256(b"not the verifier").digest()).rstrip(b"=")
    p["code_challenge"] = other.decode()
    tampered = url.split("?")[0] + "?" + urlencode(p)
    r = s.get(tampered, allow_redirects=False, timeout=30)
    r = s.get(r.headers["Location"], allow_redirects=False, timeout=30)
    assert r.status_code == 401
    assert "invalid_grant" in r.text
    assert s.get(f"{service.origin}/app/", timeout=30).status_code == 401


def test_token_endpoint_error_is_shown(
    service: ServiceServer, fresh_ehr: FakeEhr, patient: str
) -> None:
    fresh_ehr.fail_token = "temporarily_unavailable"
    s, url = start(service, fresh_ehr, patient)
    r = s.get(url, allow_redirects=False, timeout=30)
    r = s.get(r.headers["Location"], allow_redirects=False, timeout=30)
    assert r.status_code == 401
    assert "did not issue a token (temporarily_unavailable)" in r.text


def test_access_denied_at_the_ehr_is_shown(
    service: ServiceServer, fresh_ehr: FakeEhr, patient: str
) -> None:
    s, url = start(service, fresh_ehr, patient)
    p = q(url)
    r = s.get(
        f"{service.origin}/app/callback?"
        + urlencode({"error": "access_denied", "state": p["state"]}),
        timeout=30,
    )
    assert r.status_code == 401 and "access_denied" in r.text


def test_expired_token_is_refreshed_then_session_ends_without_refresh(
    page: Any, service: ServiceServer, fresh_ehr: FakeEhr, patient: str
) -> None:
    launch = fresh_ehr.new_launch(patient)
    page.goto(f"{service.origin}/app/launch?iss={quote(fresh_ehr.iss, safe='')}&launch={launch}")
    wait_main(page)
    assert page.locator("main[data-patient]").count() == 1
    fresh_ehr.expire_tokens()  # the EHR ends the token early: one refresh, the page still works
    page.reload()
    wait_main(page)
    assert page.locator("main[data-patient]").count() == 1
    assert fresh_ehr.token_requests[-1]["grant_type"] == "refresh_token"
    # Without a refresh token, an expired token ends the session with a clear page.
    fresh_ehr.issue_refresh = False
    launch = fresh_ehr.new_launch(patient)
    page.goto(f"{service.origin}/app/launch?iss={quote(fresh_ehr.iss, safe='')}&launch={launch}")
    wait_main(page)
    fresh_ehr.expire_tokens()
    resp = page.reload()
    assert resp.status == 401
    assert page.inner_text("h1") == "Your session has ended"
    check_state(page, "session-expired")
    # and with no cookie at all
    page.context.clear_cookies()
    assert page.goto(f"{service.origin}/app/").status == 401


def test_launch_failure_page_passes_axe(page: Any, service: ServiceServer) -> None:
    resp = page.goto(f"{service.origin}/app/launch?iss={quote('https://evil.example/fhir')}")
    assert resp.status == 400
    check_state(page, "launch-refused")


def test_standalone_launch_asks_for_launch_patient(
    service: ServiceServer, fresh_ehr: FakeEhr, patient: str
) -> None:
    fresh_ehr.standalone_patient = patient
    s = requests.Session()
    r = s.get(
        f"{service.origin}/app/launch",
        params={"iss": fresh_ehr.iss},
        allow_redirects=False,
        timeout=30,
    )
    p = q(r.headers["Location"])
    assert "launch" not in p
    assert p["scope"].split()[0] == "launch/patient"
    r = s.get(r.headers["Location"], allow_redirects=False, timeout=30)
    r = s.get(r.headers["Location"], allow_redirects=False, timeout=30)
    assert r.headers["Location"] == "/app/"
    assert f'data-patient="{patient}"' in s.get(f"{service.origin}/app/", timeout=30).text
    fresh_ehr.standalone_patient = None


def test_app_headers_csp_and_framing(service: ServiceServer) -> None:
    r = requests.get(f"{service.origin}/app/", timeout=30)
    csp = r.headers["Content-Security-Policy"]
    assert "unsafe-inline" not in csp
    assert "frame-ancestors 'self'" in csp
    assert "script-src 'self'" in csp
    assert r.headers["X-Frame-Options"] == "SAMEORIGIN"
    # the rest of the service keeps its headers
    h = requests.get(f"{service.origin}/healthz", timeout=30).headers
    assert h["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in h["Content-Security-Policy"]
