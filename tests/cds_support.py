"""Helpers for CDS Hooks tests: signing keys and tokens, prefetch shapes, the card checker."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import jwt
from conformance import assert_no_empty, assert_valid_resource
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from pathway.rules.catalogue import all_rules

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
MEDICATIONS = {"buprenorphine", "methadone", "naltrexone", "naloxone", "lofexidine", "clonidine"}
STATUSES = {
    "active",
    "suitable",
    "caution",
    "not-yet",
    "contraindicated",
    "recommended",
    "not-indicated",
}
PHASES = {"assessment", "stabilization", "maintenance", "recovery", "not-applicable"}


class Signer:
    """An EHR's signing key and the JWK Set that publishes it."""

    def __init__(self, alg: str = "ES384", kid: str = "k1", iss: str = "https://ehr.example.org"):
        self.alg, self.kid, self.iss = alg, kid, iss
        if alg.startswith("ES"):
            self.key: Any = ec.generate_private_key(ec.SECP384R1())
            jwk = ECAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        else:
            self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            jwk = RSAAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        self.jwks = {"keys": [{**jwk, "kid": kid, "alg": alg, "use": "sig"}]}

    def token(self, aud: str, **overrides: Any) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.iss,
            "sub": "ehr-client",
            "aud": aud,
            "exp": now + 300,
            "iat": now,
            "jti": str(uuid.uuid4()),
        }
        headers = {"kid": self.kid, "typ": "JWT"}
        headers.update(overrides.pop("_headers", {}))
        claims.update(overrides)
        claims = {k: v for k, v in claims.items() if v is not None}
        return jwt.encode(claims, self.key, algorithm=self.alg, headers=headers)


@contextmanager
def pathway_log() -> Iterator[list[str]]:
    """The messages the service logs inside the block (its "pathway" logger does not
    propagate, so pytest's caplog alone does not see them)."""
    messages: list[str] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    handler = Capture(logging.DEBUG)
    logger = logging.getLogger("pathway")
    logger.addHandler(handler)
    try:
        yield messages
    finally:
        logger.removeHandler(handler)


def prefetch_of(bundle: dict[str, Any]) -> dict[str, Any]:
    """A scenario Bundle split into the contract's prefetch keys (searchset Bundles)."""
    by_type: dict[str, list[dict[str, Any]]] = {}
    for e in bundle["entry"]:
        by_type.setdefault(e["resource"]["resourceType"], []).append(e)

    def searchset(*types: str) -> dict[str, Any]:
        entries = [e for t in types for e in by_type.get(t, [])]
        return {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": len(entries),
            "entry": entries,
        }

    patient = by_type["Patient"][0]["resource"]
    return {
        "patient": patient,
        "conditions": searchset("Condition"),
        "observations": searchset("Observation"),
        "medicationRequests": searchset("MedicationRequest", "Medication"),
        "carePlans": searchset("CarePlan"),
        "tasks": searchset("Task"),
    }


def hook_request(
    hook: str, patient_id: str, prefetch: dict[str, Any] | None, **extra: Any
) -> dict[str, Any]:
    context: dict[str, Any] = {"userId": "Practitioner/example", "patientId": patient_id}
    context.update(extra.pop("context", {}))
    body: dict[str, Any] = {"hook": hook, "hookInstance": str(uuid.uuid4()), "context": context}
    if prefetch is not None:
        body["prefetch"] = prefetch
    body.update(extra)
    return body


RULE_IDS = frozenset(r.id for r in all_rules())


def empty_patient_view(patient: dict[str, Any]) -> dict[str, Any]:
    """A patient-view request for `patient` whose prefetch says "no data" for every other key
    (the smallest request that is answered 200)."""
    return hook_request(
        "patient-view",
        str(patient["id"]),
        {"patient": patient, "conditions": None, "observations": None, "medicationRequests": None},
    )


def assert_valid_card(card: dict[str, Any]) -> None:
    """CDS Hooks 2.0 card rules plus the contract's (CONTRACT.md §1)."""
    assert_no_empty(card, "card")
    assert UUID_RE.match(card["uuid"]), card["uuid"]
    assert isinstance(card["summary"], str) and 0 < len(card["summary"]) < 140
    assert card["indicator"] in ("info", "warning", "critical")
    assert isinstance(card["source"]["label"], str)
    assert isinstance(card["detail"], str)
    for link in card.get("links", []):
        assert link["type"] in ("absolute", "smart") and link["label"] and link["url"]
    for reason in card.get("overrideReasons", []):
        assert reason["code"] and reason["display"]
    if card.get("suggestions"):
        assert card["selectionBehavior"] in ("at-most-one", "any")
        for s in card["suggestions"]:
            assert UUID_RE.match(s["uuid"]) and s["label"]
            for a in s["actions"]:
                assert a["type"] in ("create", "update", "delete") and a["description"]
                if a["type"] in ("create", "update"):
                    assert_valid_resource(a["resource"])
                else:
                    assert "/" in a["resourceId"]
    else:
        assert "selectionBehavior" not in card
    a = card["extension"]["io.github.oud-pathway.assessment"]
    assert a["phase"] in PHASES
    assert isinstance(a["returnToUse"], bool) and isinstance(a["suspectedOud"], bool)
    assert a["planDefinition"].startswith(
        "https://oud-pathway.github.io/fhir/PlanDefinition/oud-care-pathway|"
    )
    for m in a["medications"]:
        assert m["medication"] in MEDICATIONS and m["status"] in STATUSES and m["reasons"]
        # Every reason carries the id of its rule (CONTRACT §1), from the catalogue.
        assert len(m["rules"]) == len(m["reasons"]), m
        assert set(m["rules"]) <= RULE_IDS, m["rules"]
        for ref in m.get("evidence", []):
            assert re.match(r"^[A-Z][A-Za-z]+/[^/]+$", ref) or ref.startswith(("urn:", "http"))
    for code in a.get("tasks", []):
        assert isinstance(code, str) and code


def assert_valid_response(body: dict[str, Any]) -> None:
    assert isinstance(body["cards"], list)
    for card in body["cards"]:
        assert_valid_card(card)
    for action in body.get("systemActions", []):
        assert action["type"] in ("create", "update", "delete")
