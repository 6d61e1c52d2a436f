"""The producer's partitioner places every key where aiokafka's (and the Java client's) would."""

import os
import uuid

from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as reference

from shared.runtime.partitioner import murmur2, partition


def test_murmur2_is_kafkas():
    keys = [os.urandom(n) for n in range(80)] + [f"{uuid.uuid4()}.{os.urandom(8).hex()}".encode() for _ in range(500)]
    assert [murmur2(k) for k in keys] == [reference(k) for k in keys]
    # the Java client's own test vectors (org.apache.kafka.common.utils.UtilsTest#testMurmur2)
    assert [murmur2(k) & 0xFFFFFFFF for k in (b"21", b"foobar", b"a-little-bit-long-string")] == [
        -973932308 & 0xFFFFFFFF,
        -790332482 & 0xFFFFFFFF,
        -985981536 & 0xFFFFFFFF,
    ]


def test_keys_land_on_the_partitions_aiokafka_picks():
    default = DefaultPartitioner()
    for count in (1, 3, 4, 12):
        partitions = list(range(count))
        for _ in range(300):
            key = str(uuid.uuid4()).encode()
            assert partition(key, partitions, partitions) == default(key, partitions, partitions)
    assert partition(None, [0, 1, 2], [2]) == 2
