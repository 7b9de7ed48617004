"""Parsing in worker processes gives exactly what one process gives, in every usage format: the same facts
(every column, positions and lines included), the same quarantine, the same report, whatever the blocks."""

from __future__ import annotations

import json
import random
from datetime import datetime, timezone

import pytest

from ledger.commands import ingest as ingest_command
from ledger.settings import Settings
from ledger.store.database import Database

NOW = datetime(2026, 3, 1, tzinfo=timezone.utc)
TIMES = ["2026-01-05T10:00:07.123456Z", "2026-01-05T10:00:07Z", "2026-01-31T23:30:00-05:00",
         "2026-02-01 00:00:00.5+02:00", "2026-01-05t10:00:07.123456789z"]


def records(seed: int, n: int) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        record = {"event_id": f"e{i % (n - 40)}", "source": "product", "source_customer_id": f"pr_{rng.randrange(30)}",
                  "meter": rng.choice(["api_calls", "fraud_checks"]), "quantity": rng.randrange(0, 500),
                  "event_time": rng.choice(TIMES)}
        if rng.random() < 0.1:
            record["properties"] = {"region": rng.choice(["eu", "us"]), "note": 'a "quoted", word'}
        out.append(record)
    return out  # the last 40 repeat earlier event ids: duplicates or conflicts


def ndjson(rs: list[dict], rng: random.Random) -> str:
    lines = [json.dumps(r) for r in rs]
    for at in rng.sample(range(len(lines)), 12):
        lines[at] = rng.choice(['{"event_id": 5}', "not json", "", '{"event_id":"x","source":"p"}',
                                lines[at].replace('"quantity": ', '"quantity": -')])
    return "\n".join(lines) + "\n"


def cloudevents(rs: list[dict], rng: random.Random) -> str:
    lines = []
    for r in rs:
        event = {"specversion": "1.0", "id": r["event_id"], "source": r["source"], "type": r["meter"],
                 "subject": r["source_customer_id"], "time": r["event_time"], "datacontenttype": "application/json",
                 "data": {"quantity": r["quantity"], **r.get("properties", {})}}
        if rng.random() < 0.05:
            event["traceid"] = "abc"
        lines.append(json.dumps(event))
    for at in rng.sample(range(len(lines)), 12):
        lines[at] = rng.choice(['{"specversion": "0.3"}', "[1]", lines[at].replace('"1.0"', '"2.0"'),
                                lines[at].replace('"quantity": ', '"quantity": 1.5, "q": ')])
    return "\n".join(lines) + "\n"


def csv_text(rs: list[dict], rng: random.Random, spanning: bool) -> str:
    def cell(value) -> str:
        text = value if isinstance(value, str) else json.dumps(value)
        return '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"\n') else text

    lines = ["event_id,source,source_customer_id,meter,quantity,event_time,properties"]
    for i, r in enumerate(rs):
        props = r.get("properties")
        if spanning and i == len(rs) // 2:
            props = {"note": "a cell\nover two lines"}
        lines.append(",".join(cell(r[k]) for k in ("event_id", "source", "source_customer_id", "meter", "quantity",
                                                  "event_time")) + "," + ("" if props is None else cell(props)))
    for at in rng.sample(range(1, len(lines)), 12):
        lines[at] = rng.choice(["a,b", "x,product,pr_1,api_calls,1.5,2026-01-05T10:00:07Z,", "",
                                lines[at].replace(",product,", ",,"), "e1,product,pr_1,API,1,2026-01-05T10:00:07Z,"])
    return "\n".join(lines) + "\n"


def ingest(db_url: str, home, path, fmt: str, monkeypatch, parallel: bool) -> dict:
    with monkeypatch.context() as patch:
        if parallel:
            patch.setattr(ingest_command, "PARALLEL_MIN_BYTES", 0)
            patch.setattr(ingest_command, "BLOCK_BYTES", 2048)
            patch.setenv("LEDGER_INGEST_WORKERS", "2")
        else:
            patch.setattr(ingest_command, "PARALLEL_MIN_BYTES", 1 << 40)
        db = Database(Settings(database_url=db_url, home=home))
        try:
            report = ingest_command.ingest_file(db, "usage", str(path), fmt, now=NOW)
            with db.connection() as conn:
                facts = conn.execute("SELECT * FROM usage_facts ORDER BY position").fetchall()
                quarantine = conn.execute("SELECT line_number, reason, field, raw_text, raw_bytes FROM quarantine ORDER BY line_number").fetchall()
        finally:
            db.close()
    counts = {k: v for k, v in report.as_dict().items() if k in ("read", "appended", "duplicates", "conflicts",
                                                                   "quarantined")}
    return {"facts": facts, "quarantine": quarantine, "report": counts}


@pytest.mark.parametrize("fmt,spanning", [("ndjson", False), ("cloudevents", False), ("csv", False),
                                          ("csv", True)])
def test_workers_give_what_one_process_gives(fmt, spanning, db_url, fresh_db_url, tmp_path, monkeypatch):
    rng = random.Random(7)
    rs = records(11, 1500)
    text = {"ndjson": lambda: ndjson(rs, rng), "cloudevents": lambda: cloudevents(rs, rng),
            "csv": lambda: csv_text(rs, rng, spanning)}[fmt]()
    path = tmp_path / f"usage.{'csv' if fmt == 'csv' else 'ndjson'}"
    path.write_text(text)
    alone = ingest(fresh_db_url(), tmp_path / "a", path, fmt, monkeypatch, parallel=False)
    workers = ingest(db_url, tmp_path / "b", path, fmt, monkeypatch, parallel=True)
    assert alone["report"]["quarantined"] >= 10 and alone["report"]["appended"] > 1000, alone["report"]
    assert workers["report"] == alone["report"]
    assert workers["quarantine"] == alone["quarantine"]
    assert workers["facts"] == alone["facts"]
