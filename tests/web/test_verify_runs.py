"""Each `ledger verify` leaves its finding in `verify_runs`, which the invoice page's badge reads; the table is
append-only like the facts."""

from __future__ import annotations

import json

import psycopg
import pytest


def test_ledger_verify_records_its_run(example_ledger, example_db_url):
    report = json.loads(example_ledger("verify", "--json", check_exit=0).stdout)
    example_ledger("verify", "--skip-projections", "--json", check_exit=0)
    with psycopg.connect(example_db_url, autocommit=True) as conn:
        runs = conn.execute("SELECT head_position, head_hash, facts, ok, projections, first_mismatch"
                            " FROM verify_runs ORDER BY run_id").fetchall()
        assert runs == [(report["head"]["position"], report["head"]["chain_hash"], report["facts"], True, True, None),
                        (report["head"]["position"], report["head"]["chain_hash"], report["facts"], True, False,
                         None)]
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("UPDATE verify_runs SET ok = false")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM verify_runs")
