"""How many parser processes an ingest starts."""

import pytest

from ledger.ingest import pipeline


@pytest.mark.parametrize(("cores", "workers"), [(1, 1), (2, 2), (3, 2), (4, 3), (16, 15)])
def test_one_parser_per_core_but_one_and_two_on_two_cores(monkeypatch, cores, workers):
    monkeypatch.setattr(pipeline.os, "cpu_count", lambda: cores)
    assert pipeline.worker_count() == workers


def test_the_setting_decides_when_given(monkeypatch):
    monkeypatch.setattr(pipeline.os, "cpu_count", lambda: 2)
    assert pipeline.worker_count(0) == 0
    assert pipeline.worker_count(5) == 5
