"""`govbus demo`: the bus end to end on a local broker, narrated for a person watching.

Everything runs for real: a secured Kafka broker, principals and ACLs, the processors as a
worker process, four departments with subscriptions of different classes and purposes,
generated changes for all four base libraries published by their authoritative departments,
subscribers applying to SQLite stores, a conflict, an objection, the audit chain.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import click

from govbus import clients
from govbus.broker.commands import local_cluster
from govbus.broker.local import broker_answers
from govbus.processes import ProcessorProcess
from govbus.processors import audit, control
from govbus.processors.control_commands import read_audit
from govbus.processors.subscriptions import SubscriptionRequest
from govbus.producers.generate import generate
from govbus.producers.publisher import Publisher
from govbus.security import credentials, principals
from govbus.settings import Settings, get_settings
from govbus.topics import apply as topic_apply
from govbus.topics.catalog import load_catalog
from govbus.topics.names import CONFLICTS, TopicNames

# (department, library, fields, purpose): four departments, different classes and purposes.
SUBSCRIPTIONS = [
    ("civil_affairs", "population", "citizen_id,name,sex,date_of_birth,household_address", "work_reference"),
    ("health", "population", "citizen_id,name,date_of_birth,marital_status", "administrative_basis"),
    ("market_regulation", "credit", "record_id,kind,subject_name,subject_credit_code,decision_date,content", "administrative_basis"),
    ("public_security", "legal_entity", "credit_code,name,legal_representative,status,region", "data_verification"),
    ("public_security", "certificate", "certificate_number,certificate_type,holder_name,status,expiry_date", "data_verification"),
]
# (library, authoritative department, how many changes)
PUBLICATIONS = [("population", "public_security", 300), ("legal_entity", "market_regulation", 150),
                ("credit", "development_reform", 100), ("certificate", "data_bureau", 100)]


def say(text: str) -> None:
    click.echo(text)


def step(title: str) -> None:
    click.secho(f"\n▶ {title}", bold=True)


@contextmanager
def running_broker(settings: Settings) -> Iterator[str]:
    """The configured broker if it answers; else a local one, started now and stopped after."""
    cluster = local_cluster(settings)
    if broker_answers(settings.bootstrap_servers, security=clients.security_config(settings) if _has_login(settings) else None):
        say(f"Using the broker at {settings.bootstrap_servers}.")
        yield settings.bootstrap_servers
        return
    say("Starting a secured local Kafka broker (KRaft mode, SASL/SCRAM, deny by default) from Maven Central's jars …")
    bootstrap = cluster.start()
    say(f"Broker ready at {bootstrap}; data in {settings.home / 'broker'}.")
    try:
        yield bootstrap
    finally:
        for line in cluster.stop():
            say(f"Broker {line}.")


def _has_login(settings: Settings) -> bool:
    return settings.security_protocol == "PLAINTEXT" or bool(settings.sasl_password) or \
        (credentials.directory(settings.home) / f"{settings.sasl_username}.json").exists()


@click.command()
@click.option("--prefix", default="demo.", show_default=True, help="Topic prefix, so the demo never touches real topics.")
@click.option("--keep", is_flag=True, help="Keep the subscribers' SQLite stores (their folder is printed).")
def demo(prefix: str, keep: bool) -> None:
    """Run the bus end to end on a local broker and print what happened."""
    settings = get_settings()
    if prefix == "demo.":
        prefix = f"demo{int(time.time())}."  # a fresh namespace each run: the demo starts from nothing
    with running_broker(settings) as bootstrap:
        admin_settings = settings.model_copy(update={"bootstrap_servers": bootstrap, "topic_prefix": prefix})
        stores = Path(tempfile.mkdtemp(prefix="govbus-demo-stores-"))
        Demo(admin_settings, stores).run()
        if keep:
            say(f"The subscribers' stores are kept in {stores}.")


class Demo:
    def __init__(self, settings: Settings, stores: Path) -> None:
        self.settings = settings
        self.names = TopicNames(settings.topic_prefix)
        self.catalog = load_catalog(settings.catalog_dir)
        self.stores = stores
        self.passwords: dict[str, str] = {}
        self.published_at: dict[str, float] = {}

    def login(self, principal: str) -> Settings:
        return self.settings.logged_in_as(principal, self.passwords.get(principal, ""))

    def run(self) -> None:
        self.set_up()
        worker = ProcessorProcess(self.login(credentials.PROCESSORS).model_copy(update={"processor_port": _free_port()}),
                                  ["gate", "router"], self.stores / "processors.log")
        step("Starting the processors (gate and router) as the govbus-processors principal")
        worker.start()
        say(f"Processors ready; health at {worker.health_url}.")
        try:
            subscriptions = self.subscribe()
            self.publish()
            counts = self.fill_stores()
            self.show_conflict()
            self.raise_and_resolve_objection(subscriptions)
            self.verify_audit()
            self.report(counts)
        finally:
            worker.stop()
            say("Processors stopped.")

    # -- the steps ---------------------------------------------------------------------------
    def set_up(self) -> None:
        step(f"Applying the catalog, principals and ACLs (topic prefix {self.names.prefix!r})")
        changes = topic_apply.apply_catalog(self.settings, self.catalog, self.names)
        say(f"{len(self.catalog.topic_specs(self.names))} topics for {len(self.catalog.libraries)} base libraries "
            f"({len(changes)} made now); ACLs derived from the catalog and the subscriptions.")
        if self.settings.secured:
            admin = clients.admin(self.settings)
            try:
                for name in [credentials.PROCESSORS, credentials.GOVERNANCE, *self.catalog.departments]:
                    self.passwords[name] = principals.ensure(admin, self.settings.home, name).password
            finally:
                admin.close()
            say(f"{len(self.passwords)} principals; credentials in {credentials.directory(self.settings.home)}.")

    def subscribe(self) -> dict[tuple[str, str], str]:
        step("Departments apply for data through the one channel (统一申请)")
        made = {}
        for department, library, fields, purpose in SUBSCRIPTIONS:
            asked = SubscriptionRequest(department=department, library=library, fields=tuple(fields.split(",")), purpose=purpose)
            subscription = control.request(self.settings, asked)
            if subscription.state == "requested":
                subscription = control.approve(self.settings, subscription.id, subscription.owner)
            made[(department, library)] = subscription.id
            say(f"  {department:<18} ← {library:<13} {purpose:<21} {subscription.state} by {subscription.decision.by}"
                f" ({'automatic: unconditional fields' if subscription.automatic else 'conditional fields, owner approved'})")
        refused = control.request(self.settings, SubscriptionRequest(
            department="health", library="population", fields=("citizen_id", "biometric_digest"), purpose="work_reference"))
        say(f"  health asks for population.biometric_digest: {refused.state} — {refused.decision.reason}")
        return made

    def publish(self) -> None:
        step("Source departments publish changes (validated, Avro, CloudEvents headers)")
        for library, department, count in PUBLICATIONS:
            records = list(generate(library, count, seed=7, invalid_share=0.03, department=department))
            with Publisher(self.login(department), department, library, names=self.names, source_system="demo") as publisher:
                results = [publisher.publish(record) for record in records]
                sent = time.time()
            rejected = [result for result in results if not result.accepted]
            self.published_at.update({result.entity_id: sent for result in results if result.accepted})
            say(f"  {department:<18} → {library:<13} {len(results) - len(rejected)} published, {len(rejected)} rejected"
                + (f" (e.g. {rejected[0].violations[0].field}: {rejected[0].violations[0].rule})" if rejected else ""))
        self.people = [r for r in generate("population", 300, seed=7, invalid_share=0.03, department="public_security")]
        civil = [{"citizen_id": p["citizen_id"], "sequence": 1, "marital_status": "married"} for p in self.people[:40]]
        self._publish_as("civil_affairs", "population", civil)
        say(f"  civil_affairs      → population    {len(civil)} marital statuses (civil affairs is their authority)")

    def _publish_as(self, department: str, library: str, records: list[dict]) -> list:
        with Publisher(self.login(department), department, library, names=self.names, source_system="demo") as publisher:
            return [publisher.publish(record) for record in records]

    def fill_stores(self) -> dict[str, dict[str, int]]:
        from govbus.consumers.subscriber import Subscriber

        step("Subscribers apply their deliveries to their own SQLite stores")
        counts: dict[str, dict[str, int]] = {}
        departments = sorted({department for department, *_ in SUBSCRIPTIONS})
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            for department in departments:
                libraries = [library for d, library, *_ in SUBSCRIPTIONS if d == department]
                with Subscriber(self.login(department), department, libraries, self.store_url(department)) as subscriber:
                    subscriber.catch_up(timeout=10)
                    counts[department] = {status.library: subscriber.store.count(status.library) for status in subscriber.status()}
            line = "; ".join(f"{d} {sum(c.values())}" for d, c in counts.items())
            say(f"  stores: {line}")
            if self._complete(counts):
                break
            time.sleep(2)
        return counts

    def _complete(self, counts: dict[str, dict[str, int]]) -> bool:
        expected = {"population": 2, "legal_entity": 1, "credit": 1, "certificate": 1}
        return all(count > 0 for per in counts.values() for count in per.values()) and \
            sum(per.get("population", 0) for per in counts.values()) >= expected["population"] * 250

    def store_url(self, department: str) -> str:
        return f"sqlite:///{self.stores / (department + '.db')}"

    def show_conflict(self) -> None:
        step("Multi-source verification (多元校核): public security reports a marital status of its own")
        person = self.people[0]
        self._publish_as("public_security", "population", [{**person, "sequence": 2, "marital_status": "unmarried"}])
        conflict = self._wait_for_conflict(person["citizen_id"])
        say(f"  conflict on {conflict['field']}: {conflict['authoritative_department']} says {conflict['authoritative_value']!r}, "
            f"{conflict['reported_department']} says {conflict['reported_value']!r} → sent to {conflict['authoritative_department']} "
            "to verify; the authoritative value stays.")

    def _wait_for_conflict(self, citizen_id: str) -> dict:
        from kafka import TopicPartition

        consumer = clients.consumer(self.settings)
        topic = self.names.bus(CONFLICTS)
        consumer.assign([TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)])
        consumer.seek_to_beginning()
        deadline = time.monotonic() + 60
        try:
            while time.monotonic() < deadline:
                for records in consumer.poll(timeout_ms=1000).values():
                    for record in records:
                        conflict = json.loads(record.value)
                        if conflict["entity_id"] == citizen_id:
                            return conflict
        finally:
            consumer.close()
        raise click.ClickException("no conflict record arrived within 60 s; see the processors' log")

    def raise_and_resolve_objection(self, subscriptions: dict[tuple[str, str], str]) -> None:
        from govbus.consumers import objections

        step("Objection and error verification (疑义、错误信息校核)")
        person = self.people[1]
        raised = objections.raise_objection(self.login("health"), "health", "population", person["citizen_id"], "name",
                                            "the name on our medical record differs",
                                            subscription=subscriptions[("health", "population")])
        say(f"  health raises {raised.id} on population.name of one citizen; owner: {raised.owner}")
        corrected = person["name"][0] + "正明"
        resolved = objections.resolve(self.settings, raised.id, raised.owner, corrected)
        say(f"  {raised.owner} resolves it with a correction, published through its normal path: {resolved.state}")
        with_correction = self._wait_in_store("health", "population", person["citizen_id"], "name", corrected)
        say(f"  health's store now holds the corrected name: {with_correction}")

    def _wait_in_store(self, department: str, library: str, entity_id: str, field: str, value: str) -> bool:
        from govbus.consumers.subscriber import Subscriber

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with Subscriber(self.login(department), department, [library], self.store_url(department)) as subscriber:
                subscriber.catch_up(timeout=5)
                row = subscriber.store.get(library, entity_id)
            if row and row.get(field) == value:
                return True
            time.sleep(1)
        return False

    def verify_audit(self) -> None:
        step("Traceability: the sharing records (共享记录)")
        records = read_audit(self.settings)
        result = audit.verify(records)
        say(f"  {result.checked} sharing records in {len(result.heads)} hash chains: "
            + ("verified, no record altered or missing." if result.ok else f"BROKEN: {result.first_break.message}"))
        citizen = self.people[2]["citizen_id"]
        for row in audit.query(records, entity_id=citizen)[:4]:
            say(f"  {citizen[:6]}…: {row['department']} received {', '.join(row['fields'])} for {row['purpose']} "
                f"({'masked: ' + ', '.join(row['masked']) if row['masked'] else 'unmasked'})")
        if not result.ok:
            raise click.ClickException("the audit chain does not verify")

    def report(self, counts: dict[str, dict[str, int]]) -> None:
        from govbus.consumers.stores import open_store

        step("What each department received, and how fresh")
        for department, per_library in counts.items():
            store = open_store(self.store_url(department))
            try:
                for library in per_library:
                    rows = store.rows(library)
                    lags = [(row["applied_at"] - row["delivered_at"]).total_seconds() for row in rows
                            if row.get("applied_at") and row.get("delivered_at")]
                    fresh = f"routed→applied p50 {statistics.median(lags):.2f} s" if lags else "no rows"
                    columns = sorted(k for k, v in (rows[0] if rows else {}).items() if v is not None and k in schema_fields(library))
                    say(f"  {department:<18} {library:<13} {len(rows):>4} entities; fields {', '.join(columns)}; {fresh}")
            finally:
                store.close()
        say(f"\nDone at {datetime.now(timezone.utc):%H:%M:%S} UTC: every department received exactly what it is entitled to.")


def schema_fields(library: str) -> set[str]:
    from govbus.schemas.registry import default_registry

    return set(default_registry().policy(library))


def _free_port() -> int:
    from govbus.broker.provision import free_port

    return free_port()
