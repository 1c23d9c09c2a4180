"""The gate on the batched runtime: every library's ingest topics, one batch at a time.

For each event ``GateLogic`` decides; the new golden record goes to partition n of
``state.<library>`` (n: the event's partition) and the outputs to their topics, all in the
batch's transaction with the input offsets (``batches.Checkpoint``). So a golden record and the
change it produced are stored together or not at all, which is what lets a redelivered event
find its state and re-emit exactly the same outputs.
"""

from __future__ import annotations

from confluent_kafka import KafkaException, Message
from confluent_kafka.admin import AdminClient

from govbus import clients
from govbus.processors.runtime.batches import BatchLoop, Checkpoint, Partition, by_library, headers_of
from govbus.processors.runtime.counting import Tally
from govbus.processors.gate.logic import GateLogic, PartitionCounts, remembered_counts
from govbus.processors.runtime.output import Output
from govbus.processors.runtime.partition_store import PartitionStore
from govbus.schemas.codec import default_codec
from govbus.settings import Settings
from govbus.topics.catalog import Catalog
from govbus.topics.names import TopicNames


class GateBatches:
    """The gate of every library in the catalog, as one ``BatchProcessor``."""

    name = "gate"

    def __init__(self, settings: Settings, catalog: Catalog) -> None:
        self.names = TopicNames(settings.topic_prefix)
        codec, secret, partitions = default_codec(), settings.key_secret.encode(), partition_counter(settings)
        self.logics: dict[str, GateLogic] = {}
        self.stores: dict[str, PartitionStore] = {}
        self.library_of: dict[str, str] = {}  # ingest topic -> library
        for library in catalog.libraries.values():
            self.logics[library.library] = GateLogic(library.library, catalog, codec, self.names, secret=secret,
                                                     partitions=partitions)
            self.stores[library.library] = PartitionStore(settings, self.names.state(library.library))
            for department in library.sources:
                self.library_of[self.names.ingest(library.library, department)] = library.library
        self.topics = sorted(self.library_of)
        self.tally = Tally(self.name, self.names)

    def assigned(self, partitions: list[Partition]) -> None:
        """Restore the golden records of the state partitions matching the ingest partitions."""
        for library, numbers in by_library(partitions, self.library_of).items():
            self.stores[library].load(numbers)

    def revoked(self, partitions: list[Partition]) -> None:
        for library, numbers in by_library(partitions, self.library_of).items():
            self.stores[library].forget(numbers)

    def before(self, messages: list[Message], loop: BatchLoop) -> None:
        """Nothing to do before a gate batch."""

    def idle(self, loop: BatchLoop) -> None:
        """Nothing to do between gate batches."""

    def handle(self, messages: list[Message], checkpoint: Checkpoint) -> None:
        for message in messages:
            topic, partition = message.topic(), message.partition()
            library = self.library_of[topic]
            logic, store = self.logics[library], self.stores[library]
            key = message.key()
            step = logic.handle(topic, partition, message.offset(), key, message.value(), headers_of(message),
                                store.get(partition, key) if key else None)
            self.tally.add(library, step.outputs)
            if step.golden is not None and key:  # a golden record is only ever of an admitted, keyed event
                store.put(partition, key, step.golden)
                checkpoint.send(Output(store.topic, key, step.golden, []), partition=partition)
            for output in step.outputs:
                checkpoint.send(output)
        self.tally.flush()

    def stats(self) -> dict[str, dict[str, int]]:
        return {library: dict(logic.counts) for library, logic in self.logics.items()}


def partition_counter(settings: Settings) -> PartitionCounts:
    """An ingest topic's partition count, asked of the broker once (see ``remembered_counts``),
    for the gate's check that each event is in its key's partition."""
    admin = AdminClient(clients.librdkafka_config(settings))

    def fetch(topic: str) -> int | None:
        try:
            metadata = admin.list_topics(topic, timeout=10).topics.get(topic)
        except KafkaException:
            return None
        if metadata is None or metadata.error is not None:
            return None
        return len(metadata.partitions)

    return remembered_counts(fetch)
