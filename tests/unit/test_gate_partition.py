"""The gate's partition check computes the Java client's partitioner, byte for byte.

The gate refuses an event that is not in the partition its key maps to, so its MurmurHash2
must be the one Kafka's clients use: Java's ``Utils.murmur2`` (its own test vectors below),
kafka-python's ``murmur2`` and librdkafka's ``murmur2_random`` partitioner agree on it.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from kafka.partitioner.default import murmur2 as kafka_python_murmur2

from govbus.processors.gate.logic import key_partition, murmur2

# org.apache.kafka.common.utils.UtilsTest#testMurmur2: Java's signed 32-bit results.
JAVA_VECTORS = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


def as_signed(value: int) -> int:
    return value - (1 << 32) if value >= 1 << 31 else value


def test_murmur2_gives_the_java_clients_values() -> None:
    assert {data: as_signed(murmur2(data)) for data in JAVA_VECTORS} == JAVA_VECTORS


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=80))
def test_murmur2_equals_kafka_pythons_for_any_bytes(data: bytes) -> None:
    assert murmur2(data) & 0x7FFFFFFF == kafka_python_murmur2(data) & 0x7FFFFFFF


@given(st.binary(min_size=1, max_size=64), st.integers(min_value=1, max_value=500))
def test_key_partition_is_the_java_partitioners(key: bytes, partitions: int) -> None:
    assert key_partition(key, partitions) == (kafka_python_murmur2(key) & 0x7FFFFFFF) % partitions
