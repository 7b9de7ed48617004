"""`ledger serve`: the HTTP service on uvicorn; and the follower loop behind `ledger project --follow`."""

from __future__ import annotations

import signal
import sys

import orjson
import typer

from ledger.cli.main import app, database, fail
from ledger.errors import LedgerError
from ledger.logging import get_logger


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8000, "--port"),
    workers: int = typer.Option(1, "--workers", min=1, help="server processes (each keeps its own follower)"),
) -> None:
    """The HTTP API (OpenAPI at /openapi.json, docs at /docs), keeping the projections current as facts commit."""
    import uvicorn

    uvicorn.run("ledger.api.app:create_app", factory=True, host=host, port=port, workers=workers,
                log_level="warning", access_log=False, proxy_headers=False)


def follow(interval: float, as_json: bool) -> None:
    """Apply new facts as they commit until SIGTERM or SIGINT; one line per run, with the lag."""
    from ledger.projector.follow import Follower

    def report(run, state) -> None:
        line = {"mode": run.mode, "path": run.path, "facts_applied": run.facts_applied,
                "from_position": run.from_position, "to_position": run.to_position, "seconds": round(run.seconds, 3),
                "risk_from_position": run.risk_from_position, "head": state.head,
                "finance_lag_facts": state.finance.facts, "risk_lag_facts": state.risk.facts,
                "finance_lag_seconds": round(state.finance.seconds, 3), "risk_lag_seconds": round(state.risk.seconds, 3)}
        get_logger().info("projections_followed", **line)
        if as_json:
            sys.stdout.write(orjson.dumps(line).decode() + "\n")
        else:
            print(f"{run.mode}" + (f" ({run.path})" if run.path else "") + f": {run.facts_applied} facts, "
                  f"positions {run.from_position}→{run.to_position} in {run.seconds:.2f}s; lag: Finance "
                  f"{state.finance.facts} facts {state.finance.seconds:.1f}s, Risk {state.risk.facts} facts "
                  f"{state.risk.seconds:.1f}s")
        sys.stdout.flush()

    try:
        with database() as db:
            follower = Follower(db, db.settings, interval=interval, on_run=report)
            stop = lambda signum, frame: follower.stop.set()
            signal.signal(signal.SIGTERM, stop)
            signal.signal(signal.SIGINT, stop)
            follower.run()
    except LedgerError as error:
        fail(error)
    get_logger().info("projections_follow_stopped", runs=follower.state.runs,
                      facts_applied=follower.state.facts_applied)
    if not as_json:
        print(f"stopped after {follower.state.runs} runs, {follower.state.facts_applied} facts applied")
