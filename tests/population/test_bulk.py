"""The Bulk Data client against a loopback Bulk Data server (tests/population/bulkserver.py)."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
import synth
from bulkserver import BulkServer, Scenario
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from pathway.fhir.smart import SigningKey, SmartBackendAuth
from pathway.population.bulk import (
    STATE_FILE,
    BulkClient,
    BulkError,
    BulkOptions,
    retry_after,
    run_export,
)
from pathway.population.local import Paths
from pathway.population.run import population


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.now += s

    def clock(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def export_files() -> tuple[dict[str, bytes], dict[str, str], list[synth.Truth]]:
    """40 patients as an EHR would export them: two files per type."""
    truths = synth.population(40, seed=5)
    by_type: dict[str, list[bytes]] = {}
    for t in truths:
        for r in t.resources:
            by_type.setdefault(r["resourceType"], []).append(orjson.dumps(r))
    by_type["Medication"] = [orjson.dumps(m) for m in synth.medication_resources()]
    files, types = {}, {}
    for rtype, rows in sorted(by_type.items()):
        for k in range(2):
            name = f"{rtype.lower()}-{k}.ndjson"
            files[name] = b"".join(x + b"\n" for x in rows[k::2])
            types[name] = rtype
    return files, types, truths


def signing_key(tmp_path: Path) -> SigningKey:
    key = ec.generate_private_key(ec.SECP384R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    (tmp_path / "key.pem").write_bytes(pem)
    return SigningKey.from_file(tmp_path / "key.pem")


def client_for(server: BulkServer, tmp_path: Path, t: FakeTime, **options: Any) -> BulkClient:
    auth = SmartBackendAuth(server.token_url, "pathway-population", signing_key(tmp_path))
    return BulkClient(
        server.base,
        (server.base,),
        auth=auth,
        invalidate=auth.invalidate,
        options=BulkOptions(**options),
        sleep=t.sleep,
        clock=t.clock,
    )


def test_export_with_throttling_errors_and_an_expiring_token(
    tmp_path: Path, export_files: Any, paths: Paths
):
    files, types, _ = export_files
    t = FakeTime()
    with BulkServer(Scenario(files, types)) as server:
        client = client_for(server, tmp_path, t, poll_cap_seconds=30)
        folder = run_export(client, tmp_path / "out")
        log = server.s.log
    # kick-off: GET with the Bulk Data headers, the 429 waited out and retried
    kickoffs = [(m, p, h) for m, p, h in log if "$export" in p]
    assert len(kickoffs) == 2
    for _, p, h in kickoffs:
        assert h["Prefer"] == "respond-async" and h["Accept"] == "application/fhir+json"
        assert "_type=Patient%2CCondition" in p
    # polling honoured Retry-After (1 s) and backed off after the 500
    assert t.sleeps.count(1.0) >= 2
    assert server.s.polls == 4  # 202, 500, 202, 202, then 200: 4 counted before the manifest
    # several files per type, every one downloaded once, lines intact
    got = sorted(p.name for p in folder.glob("*.ndjson"))
    assert len(got) == len(files)
    assert sum(len(p.read_bytes().splitlines()) for p in folder.glob("*.ndjson")) == sum(
        v.count(b"\n") for v in files.values()
    )
    file_gets = [p for m, p, _ in log if m == "GET" and p.startswith("/files/")]
    # the first token expired mid-download: one 401, a new token, the file retried
    assert server.s.tokens_issued == 2
    assert len(file_gets) == len(files) + 1
    assert server.s.deleted
    state = orjson.loads((tmp_path / "out" / STATE_FILE).read_bytes())
    assert state["complete"] is True and len(state["files"]) == len(files)
    assert "tok" not in (tmp_path / "out" / STATE_FILE).read_text()  # no token kept on disk

    # The exported folder gives the same population as the files themselves.
    src = tmp_path / "src"
    src.mkdir()
    for name, data in files.items():
        (src / name).write_bytes(data)
    as_of = synth.AS_OF
    a = population(folder, tmp_path / "ra", as_of, paths, workers=1, progress=False)
    b = population(src, tmp_path / "rb", as_of, paths, workers=1, progress=False)
    assert (a.out_dir / "patients.ndjson").read_bytes() == (
        b.out_dir / "patients.ndjson"
    ).read_bytes()
    assert a.tally.get("patients") == 40


def test_a_killed_export_resumes_without_downloading_again(tmp_path: Path, export_files: Any):
    files, types, _ = export_files
    t = FakeTime()
    with BulkServer(Scenario(files, types, kickoff_429=0, status_500_at=None)) as server:
        finished: list[str] = []

        def kill_after_three(name: str) -> None:
            finished.append(name)
            if len(finished) == 3:
                raise KeyboardInterrupt  # as a kill would stop it

        with pytest.raises(KeyboardInterrupt):
            run_export(client_for(server, tmp_path, t), tmp_path / "out", on_file=kill_after_three)
        before = len(server.s.log)
        run_export(client_for(server, tmp_path, t), tmp_path / "out")
        after = server.s.log[before:]
    again = [p for m, p, _ in after if p.startswith("/files/")]
    assert len(again) == len(files) - 3  # the three finished files were not fetched again
    assert not any("$export" in p for _, p, _ in after)  # the same job, no new kick-off
    assert len(list((tmp_path / "out" / "export").glob("*.ndjson"))) == len(files)
    assert not list((tmp_path / "out" / "export").glob("*.part"))


def test_post_only_server_gets_the_4_0_post_form(tmp_path: Path, export_files: Any):
    files, types, _ = export_files
    t = FakeTime()
    scenario = Scenario(files, types, kickoff_429=0, status_500_at=None, get_allowed=False)
    with BulkServer(scenario) as server:
        run_export(client_for(server, tmp_path, t), tmp_path / "out", group="g1")
        posts = [(p, h) for m, p, h in server.s.log if m == "POST" and p != "/token"]
        bodies = [b for b in server.s.bodies if b.startswith(b"{")]
    assert [p for p, _ in posts] == ["/fhir/Group/g1/$export"]
    assert posts[0][1]["Content-Type"] == "application/fhir+json"
    params = orjson.loads(bodies[0])
    assert params["resourceType"] == "Parameters"
    assert [p["valueString"] for p in params["parameter"] if p["name"] == "_type"] == list(
        BulkOptions().types
    )  # repeated, one type each


def test_post_kickoff_with_comma_separated_types(tmp_path: Path, export_files: Any):
    files, types, _ = export_files
    with BulkServer(Scenario(files, types, kickoff_429=0, status_500_at=None)) as server:
        run_export(client_for(server, tmp_path, FakeTime(), kickoff="post"), tmp_path / "o")
        body = orjson.loads(next(b for b in server.s.bodies if b.startswith(b"{")))
    types_param = [p["valueString"] for p in body["parameter"] if p["name"] == "_type"]
    assert types_param == [",".join(BulkOptions().types)]


def test_manifest_pages_error_files_and_gzip(tmp_path: Path, export_files: Any):
    files, types, _ = export_files
    scenario = Scenario(files, types, kickoff_429=0, status_500_at=None, pages=3, gzip_files=True)
    with BulkServer(scenario) as server:
        folder = run_export(client_for(server, tmp_path, FakeTime()), tmp_path / "out")
    assert len(list(folder.glob("*.ndjson"))) == len(files)
    outcomes = list(folder.glob("*.outcomes"))
    assert len(outcomes) == 1  # kept, under a name the engines do not read
    first = sorted(folder.glob("*.ndjson"))[0].read_bytes()
    assert first.startswith(b"{")  # decoded from gzip on the wire
    assert gzip.compress(b"") != first


def test_files_without_token_when_not_required(tmp_path: Path, export_files: Any):
    files, types, _ = export_files
    scenario = Scenario(files, types, kickoff_429=0, status_500_at=None, requires_token=False)
    with BulkServer(scenario) as server:
        run_export(client_for(server, tmp_path, FakeTime()), tmp_path / "out")
        file_headers = [h for m, p, h in server.s.log if p.startswith("/files/")]
    assert file_headers and all("Authorization" not in h for h in file_headers)


def test_urls_off_the_allowlist_are_never_called(tmp_path: Path, export_files: Any):
    files, types, _ = export_files
    with pytest.raises(BulkError, match="ALLOWLIST"):
        BulkClient("https://evil.example.org/fhir", ("https://ehr.example.org/fhir",))
    # a manifest that points at another origin: refused before any request goes there
    scenario = Scenario(
        files, types, kickoff_429=0, status_500_at=None, redirect_files_to="http://127.0.0.9:9"
    )
    with BulkServer(scenario) as server, pytest.raises(BulkError, match="not allowed"):
        run_export(client_for(server, tmp_path, FakeTime()), tmp_path / "out")


def test_a_refused_export_says_why(tmp_path: Path, export_files: Any):
    files, types, _ = export_files
    with BulkServer(Scenario(files, types)) as server:
        client = BulkClient(server.base, (server.base,), sleep=FakeTime().sleep)  # no token
        with pytest.raises(BulkError, match=r"refused \(401\): no token"):
            run_export(client, tmp_path / "out")


def test_an_export_that_never_finishes_times_out(tmp_path: Path, export_files: Any):
    files, types, _ = export_files
    t = FakeTime()
    scenario = Scenario(files, types, kickoff_429=0, status_500_at=None, in_progress=10_000)
    with BulkServer(scenario) as server:
        client = client_for(server, tmp_path, t, timeout_seconds=30, poll_cap_seconds=5)
        with pytest.raises(BulkError, match="did not finish"):
            run_export(client, tmp_path / "out")
    assert max(t.sleeps) <= 5  # the cap holds


def test_retry_after_forms():
    assert retry_after("7") == 7.0
    assert retry_after(None) is None and retry_after("soon") is None
    now = datetime(2025, 6, 15, 12, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=90), usegmt=True)
    assert retry_after(later, now=lambda: now.timestamp()) == pytest.approx(90)
    earlier = format_datetime(now - timedelta(seconds=90), usegmt=True)
    assert retry_after(earlier, now=lambda: now.timestamp()) == 0.0


def test_cli_export(tmp_path: Path, export_files: Any, monkeypatch: pytest.MonkeyPatch, capsys):
    from pathway.cli import main

    files, types, _ = export_files
    signing_key(tmp_path)
    with BulkServer(
        Scenario(files, types, kickoff_429=0, status_500_at=None, in_progress=0)
    ) as server:
        monkeypatch.setenv("PATHWAY_FHIR_ALLOWLIST", server.base)
        monkeypatch.setenv("PATHWAY_SMART_CLIENT_ID", "pathway-population")
        monkeypatch.setenv("PATHWAY_SMART_PRIVATE_KEY_FILE", str(tmp_path / "key.pem"))
        monkeypatch.setenv("PATHWAY_SMART_TOKEN_URL", server.token_url)
        out = tmp_path / "cli"
        argv = [
            "population",
            "--export",
            server.base,
            "--out",
            str(out),
            "--workers",
            "1",
            "--as-of",
            "2025-06-15T12:00:00Z",
        ]
        assert main(argv) == 0
        assert "patients: 40" in capsys.readouterr().out
        monkeypatch.setenv("PATHWAY_FHIR_ALLOWLIST", "https://other.example.org/fhir")
        assert main(argv) == 1
        assert "ALLOWLIST" in capsys.readouterr().err
