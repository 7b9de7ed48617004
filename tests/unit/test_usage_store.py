"""The usage append path's in-memory parts: batch addressing, leaving rows out, and screening keys."""

from __future__ import annotations

from array import array

from hypothesis import given
from hypothesis import strategies as st

from ledger.store.usage import SeenKeys, _Batch, pack_usage
from ledger.store.usage_rows import ROW_HEAD, UsageRow

chunk_rows = st.lists(st.binary(min_size=1, max_size=5).map(lambda tail: ROW_HEAD + tail), max_size=6)


@given(st.lists(chunk_rows, min_size=1, max_size=4), st.data(), st.integers(1, 2**40))
def test_a_batch_numbers_the_rows_it_keeps_and_leaves_out_exactly_the_dropped_ones(chunks, data, first):
    packed = [pack_usage([UsageRow(i, i, "2026-01", row) for i, row in enumerate(rows)]) for rows in chunks]
    every = [row for rows in chunks for row in rows]
    batch = _Batch(packed)
    assert batch.size == len(every) and [batch.row(g) for g in range(batch.size)] == every
    dropped = data.draw(st.sets(st.integers(0, max(batch.size - 1, 0)))) if every else set()
    kept = [row for g, row in enumerate(every) if g not in dropped]
    numbered = [row[:6] + (first + i).to_bytes(8, "big") + row[14:] for i, row in enumerate(kept)]
    assert batch.copy_body(dropped, first) == b"".join(numbered)
    assert [batch.row(g) for g in range(batch.size)] == every  # the chunks themselves are left as they were


@given(st.lists(st.integers(-3, 3) | st.integers(-2**63, 2**63 - 1), max_size=300))
def test_screening_never_clears_a_key_met_before_and_names_each_first_occurrence(hashes):
    seen = SeenKeys(1000)
    hashes = array("q", hashes)
    suspects, first_by_hash = seen.screen(hashes)
    maybe = set(suspects)
    firsts = {}
    for i, h in enumerate(hashes):
        firsts.setdefault(h, i)
        assert first_by_hash[i] == firsts[h]
        if firsts[h] != i:
            assert i in maybe  # a repeat is always a suspect; a first may be one too (a false positive)
    assert set(seen.screen(hashes)[0]) == set(range(len(hashes)))  # a second pass suspects everything


@given(st.lists(st.lists(st.integers(-2**63, 2**63 - 1), max_size=50), max_size=6))
def test_screening_in_batches_suspects_every_repeat_across_them(batches):
    seen, met = SeenKeys(10), set()
    for hashes in batches:
        maybe = set(seen.screen(array("q", hashes))[0])
        for i, h in enumerate(hashes):
            if h in met:
                assert i in maybe
            met.add(h)
