"""The broker for the stream tests: one Tansu per test process, a fresh topic per test."""

from __future__ import annotations

import uuid

import pytest

from tests.stream.kafka import create_topic, tansu_broker


@pytest.fixture(scope="session")
def broker() -> str:
    with tansu_broker() as bootstrap:
        yield bootstrap


@pytest.fixture
def topic(broker) -> str:
    """A new topic of 4 partitions."""
    name = f"usage-{uuid.uuid4().hex[:8]}"
    create_topic(broker, name, 4)
    return name
