"""The embedded server's buffers follow the machine's memory: an eighth of it, within 128MB-4GB."""

from __future__ import annotations

import pytest

from ledger.store.embedded import SERVER_CONF, available_memory, shared_buffers

GB = 2**30


@pytest.mark.parametrize("memory,size", [
    (512 * 2**20, "128MB"),   # a small container: the floor
    (2 * GB, "256MB"),
    (24 * GB, "3072MB"),      # the benchmarks' machine
    (64 * GB, "4096MB"),      # the ceiling
])
def test_shared_buffers_are_an_eighth_of_memory_within_bounds(memory, size):
    assert shared_buffers(memory) == size


def test_the_server_configuration_carries_this_machines_size():
    conf = SERVER_CONF.format(shared_buffers=shared_buffers())
    lines = [line for line in conf.splitlines() if line.startswith("shared_buffers")]
    assert lines == [f"shared_buffers = {shared_buffers()}"]


def test_a_containers_memory_limit_bounds_the_memory(tmp_path):
    limited, unlimited = tmp_path / "memory.max", tmp_path / "v1.limit"
    limited.write_text("2147483648\n")
    unlimited.write_text("max\n")
    assert available_memory((unlimited,)) == available_memory(())
    assert available_memory((limited, unlimited)) == min(2 * GB, available_memory(()))
    assert available_memory((tmp_path / "absent",)) == available_memory(())
