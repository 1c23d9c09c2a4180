"""The audit chain's anchors on a real broker: `audit publish` as governance, and `audit verify`
catching a record appended to a chain past the head the router stored."""

from __future__ import annotations

from click.testing import CliRunner

from govbus import settings as settings_module
from govbus.cli import main
from govbus.processes import settings_environment
from govbus.processors.governance import audit
from govbus.processors.governance import control
from govbus.processors.governance.control_commands import read_audit, read_heads
from govbus.processors.governance.subscriptions import SubscriptionRequest
from govbus.producers.generate import generate
from govbus.producers.publisher import Publisher
from govbus.security.credentials import GOVERNANCE

from kafka_helpers import send_raw, wait_for


def _cli(bus, *arguments: str, principal: str | None = None):
    settings = bus.as_principal(principal) if principal else bus.settings
    settings_module.get_settings.cache_clear()
    try:
        return CliRunner().invoke(main, list(arguments), env=settings_environment(settings))
    finally:
        settings_module.get_settings.cache_clear()


def test_verify_holds_the_chain_to_stored_and_published_heads_and_catches_an_appended_record(
        bus, start_processors) -> None:
    bus.apply_catalog()
    start_processors("gate", "router")
    control.request(bus.settings, SubscriptionRequest(department="hr_social_security", library="population",
                                                      purpose="data_verification", fields=("citizen_id", "name")))
    people = list(generate("population", 9, seed=191, department="public_security"))
    for batch, recorded in ((people[:6], 6), (people[6:], 9)):  # the later ones surely live: routed chains
        with Publisher(bus.settings, "public_security", "population", names=bus.names) as publisher:
            assert all(publisher.publish(record).accepted for record in batch)
        wait_for(bus.settings, bus.names.bus("audit.deliveries"), recorded, timeout=60)

    published = _cli(bus, "audit", "publish", principal=GOVERNANCE)
    assert published.exit_code == 0, published.output
    assert "Published the heads of" in published.output
    verified = _cli(bus, "audit", "verify", principal=GOVERNANCE)
    assert verified.exit_code == 0 and "anchored to" in verified.output, verified.output

    heads = read_heads(bus.settings)
    chain, head = sorted(heads.items())[0]
    last = next(audit.decode(value) for value in reversed(read_audit(bus.settings))
                if audit.decode(value)["hash"] == head)
    forged = audit.AuditChain(chain, head).append(
        delivered_at=audit_time(last), library="population", entity_id=last["entity_id"], event_id="forged",
        version=last["version"], op="UPSERT", backfill=False, deliveries=last["deliveries"])
    send_raw(bus.settings, bus.names.bus("audit.deliveries"), audit.encode(forged), key=chain.encode())
    assert audit.verify(read_audit(bus.settings)).ok, "well linked and hashed: the chain alone passes it"
    caught = _cli(bus, "audit", "verify", principal=GOVERNANCE)
    assert caught.exit_code == 1 and f"of chain {chain}: unanchored" in caught.output, caught.output
    assert "appended by someone else" in caught.output


def audit_time(record: dict):
    from datetime import datetime

    return datetime.fromisoformat(record["delivered_at"].replace("Z", "+00:00"))
