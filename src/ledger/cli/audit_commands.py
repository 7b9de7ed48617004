"""Commands that audit the store or show it off: `ledger verify` and `ledger demo`."""

from __future__ import annotations

from dataclasses import replace
from typing import Optional

import typer

from ledger.cli.runtime import fail, now, settings, store, store_line
from ledger.errors import InvalidArgumentError, LedgerError
from ledger.logging import get_logger

app = typer.Typer()


@app.command()
def verify(
    as_json: bool = typer.Option(False, "--json", help="print the report (or the refusal) as one JSON object"),
    skip_projections: bool = typer.Option(False, "--skip-projections",
                                          help="check the chain and the usage batches only (no rebuild)"),
    anchor: Optional[str] = typer.Option(None, "--anchor", metavar="POSITION:HASH",
                                         help="a head printed by an earlier verify, kept elsewhere: catches a "
                                              "rewrite that recomputed the whole chain"),
    anchors_file: Optional[str] = typer.Option(None, "--anchors", metavar="FILE",
                                               help="signed anchors written by `ledger anchor`, one a line"),
    archive: Optional[str] = typer.Option(None, "--archive", metavar="DIR",
                                          help="instead: prove that a `ledger archive facts` directory holds "
                                               "exactly the store's facts"),
) -> None:
    """Recompute the hash chain, the usage batches' digests and every projection; exit 1 at the first mismatch."""
    if archive:
        from ledger.cli.archive_commands import verify_archive_command

        verify_archive_command(archive, as_json)
        return
    from ledger.audit.verify import Anchor, describe, verify_store
    from ledger.cli.anchor_commands import read_anchors
    from ledger.cli.output import IngestProgress, emit_json

    try:
        try:
            pinned = Anchor.parse(anchor) if anchor else None
        except ValueError as error:
            raise InvalidArgumentError("--anchor", anchor, f"is not POSITION:HASH ({error})") from None
        signed, trusted = read_anchors(anchors_file, settings()) if anchors_file else ([], None)
        with store() as db, db.connection() as conn:
            with IngestProgress("verify chain", None, enabled=not as_json) as progress:
                report = verify_store(conn, projections=not skip_projections, anchor=pinned, signed=signed,
                                      trusted_key=trusted, progress=progress, settings=db.settings)
            where = store_line(db, conn)
    except LedgerError as error:
        fail(error)
    first = report.first_mismatch
    get_logger().info("store_verified" if report.ok else "store_verification_failed", facts=report.facts,
                      head_position=report.chain.head_position, ok=report.ok,
                      first_mismatch=None if first is None else first.position, seconds=round(report.seconds, 3))
    if as_json:
        emit_json(report.as_dict())
    else:
        print("\n".join([where, *describe(report)]))
    raise typer.Exit(0 if report.ok else 1)


@app.command()
def demo(
    seed: int = typer.Option(7, "--seed", help="the scenario's seed (the same seed gives the same scenario)"),
    as_json: bool = typer.Option(False, "--json", help="print a summary of the run (or the refusal) as one JSON "
                                                       "object instead of the report"),
) -> None:
    """Generate a realistic scenario and run it end to end on this store (best on a fresh LEDGER_HOME)."""
    from contextlib import contextmanager

    from ledger.cli.output import IngestProgress, emit_json, table
    from ledger.demo.run import DEMO, DemoUI, run_demo

    @contextmanager
    def progress(label: str, size: int | None):
        with IngestProgress(label, size, enabled=not as_json) as bar:
            yield bar

    say = (lambda text: None) if as_json else (lambda text: print(text, flush=True))
    ui = DemoUI(say=say, table=table, progress=progress)
    try:
        with store(create=True) as db:
            result = run_demo(db, ui, now=now(), params=replace(DEMO, seed=seed))
    except LedgerError as error:
        fail(error)
    get_logger().info("demo_finished", seed=seed, appended=result.appended, read=result.read,
                      surprises=len(result.surprises), seconds=round(result.seconds["total"], 2))
    if as_json:
        emit_json({"seed": seed, "read": result.read, "appended": result.appended, "quarantined": result.quarantined,
                   "replayed": result.replayed, "surprises": result.surprises,
                   "seconds": {k: round(v, 3) for k, v in result.seconds.items()}})
    raise typer.Exit(1 if result.surprises else 0)
