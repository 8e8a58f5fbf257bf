"""`shared.partitioner`: the same partitions as aiokafka's own partitioner, faster.

A key must land on the same partition whichever producer sends it (the bulk
producer, faststream's broker, a council system's client), or one subject's
events lose their order.
"""

from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from hypothesis import given
from hypothesis import strategies as st

from shared.partitioner import KafkaPartitioner, murmur2


@given(key=st.binary(max_size=300))
def test_murmur2_is_aiokafkas_murmur2(key: bytes) -> None:
    assert murmur2(key) == aiokafka_murmur2(key)


@given(key=st.binary(min_size=1, max_size=200), count=st.integers(min_value=1, max_value=64))
def test_a_key_goes_to_the_partition_aiokafka_chooses(key: bytes, count: int) -> None:
    partitions = list(range(count))

    chosen = KafkaPartitioner()(key, partitions, partitions)

    assert chosen == DefaultPartitioner()(key, partitions, partitions)


# Kafka's Java client's own murmur2 test vectors (`UtilsTest`), as signed 32-bit ints.
JAVA_CLIENT_CASES = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


def test_murmur2_gives_the_java_clients_hashes() -> None:
    for key, signed in JAVA_CLIENT_CASES.items():
        assert murmur2(key) == signed & 0xFFFFFFFF, key


def test_a_record_without_a_key_goes_to_an_available_partition() -> None:
    chosen = {KafkaPartitioner()(None, [0, 1, 2, 3], [2, 3]) for _ in range(50)}

    assert chosen <= {2, 3}
