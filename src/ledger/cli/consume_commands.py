"""`ledger consume KIND` (a Kafka topic into facts, exactly once) and `ledger consume --status` (offsets, lag)."""

from __future__ import annotations

import signal
import threading
from typing import List, Optional

import typer

from ledger.cli.runtime import fail, store, store_line
from ledger.errors import ConfigurationError, InvalidArgumentError, LedgerError
from ledger.logging import get_logger

app = typer.Typer()
consume_app = typer.Typer(name="consume",
                          help="Consume Kafka topics into facts, exactly once (offsets kept with the facts).")
app.add_typer(consume_app)

KINDS = ("usage", "identities", "attributes", "prices", "invoices", "credits")
MISSING_CLIENT = "the Kafka client is not installed: pip install 'ledger[stream]' (confluent-kafka)"


def _kafka_options(pairs: list[str]) -> dict[str, str]:
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            fail(InvalidArgumentError("-X", pair, "is not KEY=VALUE (a librdkafka setting)"))
        options[key.strip()] = value
    return options


def _client_installed() -> None:
    try:
        import confluent_kafka  # noqa: F401
    except ImportError:
        fail(ConfigurationError(MISSING_CLIENT))


@consume_app.callback(invoke_without_command=True)
def consume_status(
    context: typer.Context,
    status: bool = typer.Option(False, "--status", help="print each group's offsets and lag, then exit"),
    bootstrap: Optional[str] = typer.Option(None, "--bootstrap", help="HOST:PORT[,...] (default: the brokers "
                                                                       "each group last consumed from)"),
    group: Optional[str] = typer.Option(None, "--group", help="with --status: only this consumer group"),
    topic: Optional[str] = typer.Option(None, "--topic", help="with --status: only this topic"),
    kafka: List[str] = typer.Option([], "-X", help="a librdkafka setting KEY=VALUE (repeatable)"),
    as_json: bool = typer.Option(False, "--json", help="print the status (or the refusal) as one JSON object"),
) -> None:
    """Consume Kafka topics into facts; `--status` shows where each consumer group stands."""
    if context.invoked_subcommand is not None:
        return
    if not status:
        print(context.get_help())
        raise typer.Exit(2)
    _client_installed()
    from ledger.cli.output import count, emit_json, table
    from ledger.stream.status import consumer_status, total_lag

    try:
        with store() as db, db.connection() as conn:
            rows = consumer_status(conn, group=group, topic=topic, bootstrap=bootstrap,
                                   kafka_config=_kafka_options(kafka))
            where = store_line(db, conn)
    except LedgerError as error:
        fail(error)
    get_logger().info("consumer_status_read", partitions=len(rows), lag=total_lag(rows))
    if as_json:
        emit_json({"partitions": rows, "total_lag": total_lag(rows)})
        return
    print(where)
    print(table(["group", "topic", "partition", "next offset", "high watermark", "lag", "consumed", "updated"],
                [(r["group"], r["topic"], r["partition"], r["next_offset"], r["high_watermark"],
                  r["lag"] if r["lag"] is not None else f"? ({r['broker_error']})", r["messages_consumed"],
                  r["updated_at"]) for r in rows]))
    lag = total_lag(rows)
    print(f"{count(len(rows), 'partition')}; total lag {count(lag, 'message') if lag is not None else 'unknown'}")


def _consume(kind: str, bootstrap: str, topic: str, group: Optional[str], format: str, partitions: list[int],
             batch_size: Optional[int], linger: float, idle_exit: Optional[float], kafka: list[str],
             as_json: bool) -> None:
    _client_installed()
    from ledger.cli.output import emit_json
    from ledger.stream.consumer import ConsumeOptions, StreamConsumer

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())  # finish the batch in hand, commit it, leave the group
    try:
        with store(create=True) as db:
            options = ConsumeOptions(bootstrap, topic, kind, format, group, tuple(partitions),
                                     batch_size or db.settings.batch_size, linger, idle_exit, _kafka_options(kafka))
            try:
                consumer = StreamConsumer(db, options, stop=stop)
            except ValueError as error:
                raise InvalidArgumentError("--bootstrap/--topic/-X", options.topic, f"cannot be consumed: {error}"
                                           ) from None
            get_logger().info("consumer_started", topic=topic, group=options.consumer_group, kind=kind,
                              partitions=list(partitions) or "group")
            report = consumer.run()
    except LedgerError as error:
        fail(error)
    get_logger().info("consumer_stopped", **report.as_dict())
    if as_json:
        emit_json(report.as_dict())
    else:
        print(f"{kind} from kafka:{topic} (group {report.group}, {format}): {report.messages} messages in "
              f"{report.batches} batches, appended {report.appended}, duplicates {report.duplicates}, conflicts "
              f"{report.conflicts}, quarantined {report.quarantined} in {report.seconds:.2f}s "
              f"({report.messages_per_second:,.0f} messages/s); stopped by {report.stopped_by}")


def _register(kind: str) -> None:
    def command(
        bootstrap: str = typer.Option(..., "--bootstrap", help="HOST:PORT[,HOST:PORT...] of the Kafka brokers"),
        topic: str = typer.Option(..., "--topic", help="the Kafka topic to consume"),
        group: Optional[str] = typer.Option(None, "--group", help=f"consumer group (default ledger-{kind})"),
        format: str = typer.Option("ndjson", "--format", help="ndjson | cloudevents (usage only)"),
        partition: List[int] = typer.Option([], "--partition", help="consume these partitions without joining "
                                                                     "the group's rebalancing (repeatable)"),
        batch_size: Optional[int] = typer.Option(None, "--batch-size", help="messages per transaction "
                                                                            "(default LEDGER_BATCH_SIZE)"),
        linger: float = typer.Option(0.5, "--linger", help="seconds to wait for a batch to fill"),
        idle_exit: Optional[float] = typer.Option(None, "--idle-exit", help="stop after this many seconds "
                                                                            "without a message"),
        kafka: List[str] = typer.Option([], "-X", help="a librdkafka setting KEY=VALUE (repeatable), e.g. "
                                                        "security.protocol=SASL_SSL"),
        as_json: bool = typer.Option(False, "--json", help="print the final report (or the refusal) as one JSON "
                                                            "object"),
    ) -> None:
        _consume(kind, bootstrap, topic, group, format, partition, batch_size, linger, idle_exit, kafka, as_json)

    command.__doc__ = (f"Consume {kind} records from a Kafka topic, exactly once, until SIGTERM "
                       "(offsets kept in PostgreSQL with the facts).")
    consume_app.command(kind)(command)


for _kind in KINDS:
    _register(_kind)
