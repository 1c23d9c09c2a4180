"""Who may say what, on the real secured broker: every act is written by the principal logged in
as itself to its own acts topic, and the authority processor applies it only when that
principal has the right; the broker refuses the rest outright."""

from __future__ import annotations

import json
import time

import pytest
from kafka.errors import TopicAuthorizationFailedError

from govbus import clients
from govbus.consumers import objections
from govbus.consumers.objections import ObjectionError
from govbus.processors.governance import conflicts
from govbus.processors.governance import control
from govbus.processors.governance.subscriptions import SubscriptionError, SubscriptionRequest
from govbus.producers.generate import generate
from govbus.producers.publisher import Publisher
from govbus.topics import acls

from kafka_helpers import cli, golden_records, golden_values, send_raw

LIBRARY = "population"


def refused_by_broker(settings, topic: str, write: bool) -> bool:
    """Whether the broker refuses this principal reading (or writing) the topic."""
    if write:
        producer = clients.producer(settings, max_block_ms=10000)
        try:
            producer.send(topic, key=b"k", value=b"forged").get(timeout=15)
            return False
        except TopicAuthorizationFailedError:
            return True
        finally:
            producer.close()
    admin = clients.admin(settings)
    try:
        (described,) = admin.describe_topics([topic])
    finally:
        admin.close()
    return described["error_code"] == TopicAuthorizationFailedError.errno


def can_read_deliveries(bus, department: str) -> bool:
    admin = clients.admin(bus.settings)
    try:
        granted = acls.current(admin, [department], bus.names, bus.catalog)
    finally:
        admin.close()
    return acls.Grant(department, "READ", "TOPIC", bus.names.deliver(department, LIBRARY)) in granted


@pytest.fixture
def authority(bus, start_processors):
    bus.apply_catalog()
    start_processors("authority")
    return bus


def test_a_subscription_is_decided_only_by_its_fields_authority_each_logged_in_as_itself(authority) -> None:
    bus = authority
    health, police, civil, tax = (bus.as_principal(name) for name in
                                  ("health", "public_security", "civil_affairs", "tax"))
    asked = cli(health, "subscriptions", "request", "-l", LIBRARY, "--fields", "citizen_id,marital_status",
                "--purpose", "administrative_basis")
    assert asked.exit_code == 0, asked.output
    assert "requested (health ← population" in asked.output and "waiting for civil_affairs" in asked.output
    (pending,) = control.read_all(health).values()
    assert pending.history[0].by == "health" and pending.history[0].act, "the author is the acts topic's principal"

    with pytest.raises(SubscriptionError, match="refused by the bus: public_security is not the authority"):
        control.approve(police, pending.id)  # the library's owner is not marital_status's authority
    assert control.read_all(civil)[pending.id].refusals[-1].by == "public_security", "the refusal is on the record"
    assert cli(police, "subscriptions", "approve", pending.id, "--by", "civil_affairs").exit_code == 2, "no --by"
    with pytest.raises(SubscriptionError, match="decides only as itself"):
        control.approve(police, pending.id, by="civil_affairs")
    assert refused_by_broker(police, bus.names.acts("civil_affairs"), write=True), "nobody writes another's acts"
    assert refused_by_broker(health, bus.names.bus("control.subscriptions"), write=True)
    assert not can_read_deliveries(bus, "health")

    forged = control.request(tax, SubscriptionRequest(department="health", library=LIBRARY,
                                                      fields=("citizen_id", "name"), purpose="work_reference"))
    assert forged.state == "refused" and "tax wrote a request in the name of health" in forged.decision.reason

    approved = cli(civil, "subscriptions", "approve", pending.id, "--reason", "purpose declared")
    assert approved.exit_code == 0 and "approved" in approved.output and "decided by civil_affairs" in approved.output
    assert can_read_deliveries(bus, "health"), "the approval opened the department's delivery topic"
    with pytest.raises(SubscriptionError, match="tax may not revoke"):
        control.revoke(tax, pending.id, reason="no")
    revoked = control.revoke(bus.as_principal("governance"), pending.id, reason="policy review")
    assert (revoked.state, revoked.decision.by) == ("revoked", "governance")
    assert not can_read_deliveries(bus, "health"), "the revocation closed it again"


def wait_for_golden(bus, entity_id: str, field: str, value: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while True:
        golden = golden_records(bus.settings, bus.names.state(LIBRARY)).get(entity_id)
        if golden and golden_values(golden).get(field) == value:
            return
        assert time.monotonic() < deadline, f"{entity_id}.{field} never became {value!r}: {golden}"
        time.sleep(0.5)


def test_an_objection_is_answered_only_by_its_owner_and_read_only_by_its_parties(authority, start_processors) -> None:
    bus = authority
    health, police, civil = (bus.as_principal(name) for name in ("health", "public_security", "civil_affairs"))
    citizen = next(generate(LIBRARY, 1, seed=43, department="public_security"))
    with Publisher(police, "public_security", LIBRARY, names=bus.names) as publisher:
        assert publisher.publish(citizen).accepted
    with Publisher(civil, "civil_affairs", LIBRARY, names=bus.names) as publisher:
        assert publisher.publish({"citizen_id": citizen["citizen_id"], "sequence": 1, "marital_status": "married"}).accepted
    start_processors("gate")

    # A malformed step (a time without an offset) written straight to health's acts topic.
    send_raw(health, bus.names.acts("health"), json.dumps(
        {"format": 1, "act": "act-malformed", "kind": "objection.reject", "objection": "obj-x",
         "at": "2025-03-01T08:00:00"}).encode())
    raised = objections.raise_objection(health, LIBRARY, citizen["citizen_id"], "marital_status", "divorced in 2023")
    assert (raised.raised_by, raised.owner) == ("health", "civil_affairs")

    with pytest.raises(ObjectionError, match="refused by the bus: .*only civil_affairs may answer"):
        objections._outcome(police, {"format": 1, "act": "act-forged", "kind": "objection.reject",
                                     "objection": raised.id, "reason": "not ours", "at": "x"})
    with pytest.raises(ObjectionError, match="no objection"):
        objections.reject(police, raised.id, "not ours")  # public security cannot even see it
    for topic in (bus.names.objections_of("civil_affairs"), bus.names.bus("control.objections")):
        assert refused_by_broker(health, topic, write=False), f"health reads only its own objections, not {topic}"
    assert refused_by_broker(health, bus.names.objections_of("health"), write=True), "the record is the bus's"

    listed = cli(civil, "objections", "list", "--state", "open")
    assert raised.id in listed.output and "1 objection(s)." in listed.output
    resolved = cli(civil, "objections", "resolve", raised.id, "--correction", "divorced")
    assert resolved.exit_code == 0, resolved.output
    assert "resolved by civil_affairs" in resolved.output
    wait_for_golden(bus, citizen["citizen_id"], "marital_status", "divorced")
    with Publisher(civil, "civil_affairs", LIBRARY, names=bus.names) as publisher:  # the owner's next real change
        assert publisher.publish({"citizen_id": citizen["citizen_id"], "sequence": 2,
                                  "marital_status": "widowed"}).accepted
    wait_for_golden(bus, citizen["citizen_id"], "marital_status", "widowed")

    (seen,) = objections.list_objections(health, raised_by="health")
    assert (seen.state, seen.answered_by) == ("resolved", "civil_affairs")
    assert [step["step"] for step in seen.steps] == ["raised", "resolved"], "the forged answer is not a step"
    everything = objections.list_objections(bus.as_principal("governance"))
    assert [o.id for o in everything] == [raised.id], "the malformed act broke nothing"

    assessed = cli(bus.as_principal("governance"), "assess", "--format", "json")
    assert assessed.exit_code == 0, assessed.output
    (row,) = [d for d in json.loads(assessed.output)["departments"] if d["department"] == "civil_affairs"]
    assert (row["objections_received"], row["objections_answered"]) == (1, 1), "only the genuine answer counts"


def test_governance_runs_the_audit_and_the_assessment_without_the_super_user(authority) -> None:
    governance = authority.as_principal("governance")
    for arguments in (("audit", "query"), ("audit", "verify"), ("assess", "--format", "json"),
                      ("subscriptions", "list"), ("objections", "list")):
        result = cli(governance, *arguments)
        assert result.exit_code == 0, (arguments, result.output)
    assert refused_by_broker(governance, authority.names.state(LIBRARY), write=False), "never the golden records"
    assert refused_by_broker(governance, authority.names.bus("control.subscriptions"), write=True)


def wait_for_conflict(settings, timeout: float = 90) -> list:
    deadline = time.monotonic() + timeout
    while True:
        found = conflicts.list_conflicts(settings, open_only=True)
        if found:
            return found
        assert time.monotonic() < deadline, "no conflict reached the authoritative department"
        time.sleep(0.5)


def test_a_conflict_reaches_its_authority_alone_which_closes_it_with_a_verdict(authority, start_processors) -> None:
    bus = authority
    police, civil = bus.as_principal("public_security"), bus.as_principal("civil_affairs")
    person = next(generate(LIBRARY, 1, seed=47, department="public_security"))
    with Publisher(police, "public_security", LIBRARY, names=bus.names) as publisher:
        assert publisher.publish(person).accepted
    with Publisher(civil, "civil_affairs", LIBRARY, names=bus.names) as publisher:
        assert publisher.publish({"citizen_id": person["citizen_id"], "sequence": 1, "marital_status": "married"}).accepted
    with Publisher(police, "public_security", LIBRARY, names=bus.names) as publisher:
        assert publisher.publish({**person, "sequence": 2, "marital_status": "unmarried"}).accepted
    start_processors("gate")

    (conflict,) = wait_for_conflict(civil)
    assert (conflict.field, conflict.authority, conflict.reported_by) == ("marital_status", "civil_affairs",
                                                                         "public_security")
    for outsider in ("public_security", "health"):
        assert refused_by_broker(bus.as_principal(outsider), bus.names.conflicts_of("civil_affairs"), write=False)
    with pytest.raises(conflicts.ConflictError, match="only civil_affairs gives its verdict"):
        conflicts.give_verdict(police, conflict.id, "kept")
    closed = cli(civil, "conflicts", "verdict", conflict.id, "--verdict", "kept", "--note", "marriage registered")
    assert closed.exit_code == 0 and "[kept by civil_affairs]" in closed.output, closed.output
    assert conflicts.list_conflicts(civil, open_only=True) == []

    assessed = cli(bus.as_principal("governance"), "assess", "--format", "json")
    (row,) = [d for d in json.loads(assessed.output)["departments"] if d["department"] == "civil_affairs"]
    assert (row["conflicts_to_verify"], row["conflicts_open"]) == (1, 0)
