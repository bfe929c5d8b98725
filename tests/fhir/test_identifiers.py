"""The ids the service gives its CarePlan and Tasks are RFC 4122 name-based (version 5) uuids."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from pathway.fhir.careplan import careplan_urn, name_uuid, task_urn


@given(st.text(max_size=200))
def test_name_uuid_is_uuid5_of_the_url_namespace(name: str) -> None:
    assert name_uuid(name) == str(uuid.uuid5(uuid.NAMESPACE_URL, name))


def test_urns_are_stable_per_patient_and_task() -> None:
    canon = "https://oud-pathway.github.io/fhir"
    plan = careplan_urn(canon, "p1")
    assert plan == "urn:uuid:" + str(uuid.uuid5(uuid.NAMESPACE_URL, f"{canon}/careplan|p1"))
    assert careplan_urn(canon, "p2") != plan
    task = task_urn(canon, "p1", "assess-cows")
    assert task == "urn:uuid:" + str(uuid.uuid5(uuid.NAMESPACE_URL, f"{canon}/task|p1:assess-cows"))
    assert uuid.UUID(task.removeprefix("urn:uuid:")).version == 5
