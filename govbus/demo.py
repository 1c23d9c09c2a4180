"""`govbus demo`: the bus end to end on a local broker, narrated for a person watching.

Everything runs for real: a secured Kafka broker, principals and ACLs, the processors as a
worker process, four departments with subscriptions of different classes and purposes,
generated changes for all four base libraries published by their authoritative departments,
subscribers applying to SQLite stores, a life event (deaths told to the department that asked
for them, in its city only), a conflict, an objection, the audit chain.

Every act is done by its own principal, logged in as itself: each department requests, each
field's authority approves, the raiser objects and the owner answers, governance audits; the
admin super user only provisions (topics, principals, ACLs). The demo checks what it says
against the record (who decided each subscription) and each store against the projection of
the golden records under its subscription (`govbus.entitlement`: every row, field and value),
and exits non-zero, naming the department, library and first differences, when it does not hold.

Why one module of about 490 lines: the demonstration is one narrated script, read top to bottom.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, timezone
from pathlib import Path

import click

from govbus import clients, entitlement
from govbus.broker.commands import local_cluster
from govbus.broker.local import broker_answers
from govbus.processes import ProcessorProcess
from govbus.processors.governance import audit
from govbus.processors.governance import control
from govbus.processors.governance.control_commands import read_audit, verify_bus
from govbus.processors.governance.subscriptions import SubscriptionError, SubscriptionRequest
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
@click.option("--console", "with_console", is_flag=True,
              help="Then serve the governance console on 127.0.0.1 and keep the bus up until Ctrl-C.")
def demo(prefix: str, keep: bool, with_console: bool) -> None:
    """Run the bus end to end on a local broker and print what happened."""
    settings = get_settings()
    if prefix == "demo.":
        prefix = f"demo{int(time.time())}."  # a fresh namespace each run: the demo starts from nothing
    with running_broker(settings) as bootstrap:
        admin_settings = settings.model_copy(update={"bootstrap_servers": bootstrap, "topic_prefix": prefix})
        stores = Path(tempfile.mkdtemp(prefix="govbus-demo-stores-"))
        Demo(admin_settings, stores, with_console).run()
        if keep:
            say(f"The subscribers' stores are kept in {stores}.")


class Demo:
    def __init__(self, settings: Settings, stores: Path, with_console: bool = False) -> None:
        self.settings = settings
        self.with_console = with_console
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
                                  ["gate", "router", *(["freshness"] if self.with_console else [])],
                                  self.stores / "processors.log")
        authority = ProcessorProcess(self.login(credentials.AUTHORITY).model_copy(update={"processor_port": _free_port()}),
                                     ["authority"], self.stores / "authority.log")
        step("Starting the processors: gate and router as govbus-processors, the authority processor as "
             "govbus-authority")
        worker.start()
        authority.start()
        say(f"Processors ready; health at {worker.health_url} and {authority.health_url}.")
        try:
            subscriptions = self.subscribe()
            self.publish()
            self.fill_stores()
            self.tell_deaths()
            self.show_conflict()
            self.raise_and_resolve_objection(subscriptions)
            self.verify_audit()
            self.report(subscriptions)
            if self.with_console:
                self.serve_console()
        finally:
            worker.stop()
            authority.stop()
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
                for name in [credentials.PROCESSORS, credentials.AUTHORITY, credentials.GOVERNANCE,
                             *self.catalog.departments]:
                    self.passwords[name] = principals.ensure(admin, self.settings.home, name).password
            finally:
                admin.close()
            say(f"{len(self.passwords)} principals; credentials in {credentials.directory(self.settings.home)}.")

    def subscribe(self) -> dict[tuple[str, str], str]:
        step("Departments apply for data through the one channel (统一申请), each logged in as itself")
        made = {}
        for department, library, fields, purpose in SUBSCRIPTIONS:
            asked = SubscriptionRequest(department=department, library=library, fields=tuple(fields.split(",")), purpose=purpose)
            subscription = control.request(self.login(department), asked)
            for authority in subscription.awaiting:  # each conditional field's authoritative department
                subscription = control.approve(self.login(authority), subscription.id)
            self._check_authors(subscription)
            made[(department, library)] = subscription.id
            approvers = ", ".join(sorted(subscription.approved_by - {"govbus"}))
            say(f"  {department:<18} ← {library:<13} {purpose:<21} {subscription.state}: "
                + (f"approved by {approvers}, the fields' authority, logged in as itself" if approvers
                   else "automatic (unconditional fields)"))
        self.refused_decision(made[("health", "population")])
        refused = control.request(self.login("health"), SubscriptionRequest(
            department="health", library="population", fields=("citizen_id", "biometric_digest"), purpose="work_reference"))
        say(f"  health asks for population.biometric_digest: {refused.state} — {refused.decision.reason}")
        return made

    def _check_authors(self, subscription) -> None:
        """The record must show the request by the department and each approval by an authority,
        every one written as that principal (not by the operators' super user)."""
        steps = subscription.history
        wrong = [step for step in steps if step.via is not None] + \
            ([] if steps[0].by == subscription.department else [steps[0]]) + \
            [step for step in steps[1:] if step.state == "approved" and step.by not in (*subscription.authorities, "govbus")]
        if subscription.state != "approved" or wrong:
            raise click.ClickException(f"{subscription.id} is {subscription.state}, not approved by its own principals: "
                                       f"{[step.model_dump() for step in wrong]}")

    def refused_decision(self, subscription_id: str) -> None:
        """Public security owns the library but not marital_status: its revocation of health's
        subscription is refused by the authority processor, and stays on the record."""
        try:
            control.revoke(self.login("public_security"), subscription_id, reason="we own the library")
        except SubscriptionError as refusal:
            say(f"  public_security tries to revoke health's subscription: {refusal}")
        else:
            raise click.ClickException("public_security revoked a subscription it is not the authority of")

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

    def tell_deaths(self, timeout: float = 90) -> None:
        """A life event: civil affairs asks to be told of deaths in one city (health, the
        authority of the death date, approves); health records a dozen deaths across cities.
        Checked: civil affairs' event log holds exactly the deaths of its city, once each, with
        the death date and nothing else."""
        from govbus.consumers.subscriber import Subscriber

        step("A life event: civil affairs is told of the deaths in its city, and of nothing more")
        accepted = [person for person in self.people if person["citizen_id"] in self.published_at][:12]
        city = accepted[0]["household_region"][:4]
        asked = SubscriptionRequest(department="civil_affairs", library="population", events=("death",),
                                    purpose="administrative_basis", filters=(f"region={city}..",))
        subscription = control.request(self.login("civil_affairs"), asked)
        for authority in subscription.awaiting:
            subscription = control.approve(self.login(authority), subscription.id)
        self._check_authors(subscription)
        say(f"  civil_affairs      ← population.death in region {city}xx: approved by "
            f"{', '.join(sorted(subscription.approved_by - {'govbus'}))}, the death date's authority")
        died = date(2026, 11, 30)
        self._publish_as("health", "population", [{"citizen_id": person["citizen_id"], "sequence": 1,
                                                   "date_of_death": died.isoformat()} for person in accepted])
        expected = sorted(p["citizen_id"] for p in accepted if p["household_region"].startswith(city))
        say(f"  health             → population    {len(accepted)} deaths recorded, {len(expected)} of them in {city}xx")
        deadline, logged = time.monotonic() + timeout, []
        while time.monotonic() < deadline:
            with Subscriber(self.login("civil_affairs"), "civil_affairs", ["population"],
                            self.store_url("civil_affairs")) as subscriber:
                subscriber.catch_up(timeout=10)
                logged = subscriber.store.events("population", subscription_id=subscription.id)
            if len(logged) >= len(expected):
                break
            time.sleep(1)
        got = sorted(row["entity_id"] for row in logged)
        payloads = [row["payload"] for row in logged if row["payload"] != {"date_of_death": died}]
        if got != expected or payloads:
            raise click.ClickException(f"civil affairs' event log is not the deaths of {city}xx once each with their "
                                       f"date only: expected {len(expected)}, got {len(got)}; other payloads {payloads[:2]}")
        say(f"  civil_affairs' store: {len(logged)} deaths in its event log (govbus_life_events), each once, "
            "with the death date only — checked")

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
        self.verify_conflict(conflict)

    def verify_conflict(self, recorded: dict) -> None:
        """The authority receives the conflict on a topic only it reads and closes it as itself."""
        from govbus.processors.governance import conflicts

        authority = self.login(recorded["authoritative_department"])
        deadline = time.monotonic() + 60
        while not any(c.id == recorded["conflict_id"] for c in conflicts.list_conflicts(authority, open_only=True)):
            if time.monotonic() > deadline:
                raise click.ClickException("the conflict never reached its authoritative department's own topic")
            time.sleep(0.5)
        closed = conflicts.give_verdict(authority, recorded["conflict_id"], "kept", "verified against the register")
        if closed.open or closed.verdict.get("by") != recorded["authoritative_department"]:
            raise click.ClickException(f"the verdict on {recorded['conflict_id']} was not recorded as its authority's")
        say(f"  {recorded['authoritative_department']}, logged in as itself, reads it on its own conflicts topic and "
            f"closes it: {closed.verdict['verdict']} (checked).")

    def _wait_for_conflict(self, citizen_id: str) -> dict:
        from kafka import TopicPartition

        consumer = clients.consumer(self.login(credentials.GOVERNANCE))
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

        step("Objection and error verification (疑义、错误信息校核), raiser and owner each as itself")
        person = next(p for p in self.people[1:] if p["citizen_id"] in self.published_at)
        raised = objections.raise_objection(self.login("health"), "population", person["citizen_id"], "name",
                                            "the name on our medical record differs",
                                            subscription=subscriptions[("health", "population")])
        say(f"  health raises {raised.id} on population.name of one citizen; owner (the field's authority): {raised.owner}")
        try:
            objections.reject(self.login("civil_affairs"), raised.id, "not ours to say")
        except objections.ObjectionError as refusal:
            say(f"  civil_affairs tries to answer it: {refusal}")
        else:
            raise click.ClickException("civil_affairs answered an objection it does not own")
        corrected = person["name"][0] + "正明"
        resolved = objections.resolve(self.login(raised.owner), raised.id, corrected)
        if (resolved.state, resolved.answered_by) != ("resolved", raised.owner):
            raise click.ClickException(f"{raised.id} is {resolved.state} by {resolved.answered_by}")
        say(f"  {raised.owner}, logged in as itself, resolves it with a correction published through its normal "
            f"path: {resolved.state} by {resolved.answered_by}")
        if not self._wait_in_store("health", "population", person["citizen_id"], "name", corrected):
            raise click.ClickException("health's store never received the corrected name")
        say("  health's store now holds the corrected name (checked).")
        renamed = person["name"][0] + "正华"
        (result,) = self._publish_as(raised.owner, "population", [{**person, "sequence": person.get("sequence", 1) + 1,
                                                                    "name": renamed}])
        if not result.accepted:
            raise click.ClickException(f"the owner's next change was refused: {result.violations}")
        if not self._wait_in_store("health", "population", person["citizen_id"], "name", renamed):
            raise click.ClickException("the owner's next real change after the correction was not applied")
        say(f"  {raised.owner}'s next real change of that name, numbered by its own system, is applied too (checked): "
            "corrections keep an order of their own.")

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
        step("Traceability: the sharing records (共享记录), read by governance (not the super user)")
        governance = self.login(credentials.GOVERNANCE)
        records, result = read_audit(governance), verify_bus(governance)
        say(f"  {result.checked} sharing records in {len(result.heads)} hash chains: "
            + ("verified against the heads the routers stored, no record altered or missing." if result.ok
               else f"BROKEN: {result.first_break.message}"))
        citizen = self.people[2]["citizen_id"]
        for row in audit.query(records, entity_id=citizen)[:4]:
            say(f"  {citizen[:6]}…: {row['department']} received {', '.join(row['fields'])} for {row['purpose']} "
                f"({'masked: ' + ', '.join(row['masked']) if row['masked'] else 'unmasked'})")
        if not result.ok:
            raise click.ClickException("the audit chain does not verify")

    def report(self, subscriptions: dict[tuple[str, str], str]) -> None:
        """Check each department's store against the projection of the golden records under
        its approved subscription (``govbus.entitlement``), then say how fresh it was. The
        stores are caught up first: the conflict and objection steps changed records after
        they were filled."""
        step("What each department received, checked against the golden records, and how fresh")
        results = self.check_entitlements(subscriptions)
        for result in results:
            say(f"  {result.summary()}; {self._freshness(result.department, result.library)}")
        require_entitled(results)
        say(f"\nDone at {datetime.now(timezone.utc):%H:%M:%S} UTC: every department's store holds exactly the "
            "projection of the golden records it is entitled to — no row, field or value more or less — and "
            "every act was done by its own principal (both checked above).")

    def check_entitlements(self, subscriptions: dict[tuple[str, str], str],
                           timeout: float = 90) -> list[entitlement.Entitlement]:
        """The check for every subscription, retried while the stores catch up (a store is
        allowed to be behind for a moment, not to be wrong once it has caught up)."""
        from govbus.schemas.registry import default_registry

        registry, deadline = default_registry(), time.monotonic() + timeout
        records = control.read_all(self.settings)
        while True:
            self._catch_up_stores()
            goldens = {library: entitlement.read_goldens(self.settings, library, registry)
                       for library in {library for _, library in subscriptions}}
            results = [self._check_store(records[subscription_id], goldens[library], registry)
                       for (_, library), subscription_id in sorted(subscriptions.items())]
            if all(result.ok for result in results) or time.monotonic() > deadline:
                return results
            time.sleep(2)

    def _check_store(self, subscription, goldens: list, registry) -> entitlement.Entitlement:
        from govbus.consumers.stores import open_store

        with open_store(self.store_url(subscription.department)) as store:
            rows = store.rows(subscription.library, subscription_id=subscription.id)
        return entitlement.check(subscription, goldens, rows, registry, self.settings.key_secret.encode())

    def _catch_up_stores(self) -> None:
        from govbus.consumers.subscriber import Subscriber

        for department in sorted({department for department, *_ in SUBSCRIPTIONS}):
            libraries = [library for d, library, *_ in SUBSCRIPTIONS if d == department]
            with Subscriber(self.login(department), department, libraries, self.store_url(department)) as subscriber:
                subscriber.catch_up(timeout=10)

    def _freshness(self, department: str, library: str) -> str:
        from govbus.consumers.stores import open_store

        with open_store(self.store_url(department)) as store:
            rows = store.rows(library)
        lags = [(row["applied_at"] - row["delivered_at"]).total_seconds() for row in rows
                if row.get("applied_at") and row.get("delivered_at")]
        return f"routed→applied p50 {statistics.median(lags):.2f} s" if lags else "no rows"

    def serve_console(self) -> None:
        """The governance console on this bus, logged in as governance, until Ctrl-C; the
        processors keep running, so what the page shows stays live."""
        from govbus.console.commands import DEFAULT_PORT
        from govbus.console.process import ConsoleProcess

        step("The governance console (lineage, freshness, needs attention, traceability), as governance")
        port = DEFAULT_PORT if _port_free(DEFAULT_PORT) else _free_port()
        console = ConsoleProcess(self.login(credentials.GOVERNANCE), port, self.stores / "console.log").start()
        say(f"  Open {console.address} in a browser. Press Ctrl-C to stop the console, the processors and the broker.")
        try:
            while console.process is not None and console.process.poll() is None:
                time.sleep(0.5)
        except KeyboardInterrupt:
            say("\n  Stopping …")
        finally:
            console.stop()


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def require_entitled(results: list[entitlement.Entitlement]) -> None:
    """Fail the demo (exit 1) when a store is not exactly its entitlement, naming the first
    failing department, library, entity count and differences: the demo's closing claim is
    only printed when it holds."""
    failed = [result for result in results if not result.ok]
    if failed:
        raise click.ClickException(" | ".join(result.failure() for result in failed))


def _free_port() -> int:
    from govbus.broker.provision import free_port

    return free_port()
