"""`ledger serve`: the HTTP service on uvicorn; and the follower loop behind `ledger project --follow`."""

from __future__ import annotations

import signal
import sys

import orjson
import typer

from ledger.cli.runtime import fail, store
from ledger.errors import LedgerError
from ledger.logging import get_logger

app = typer.Typer()


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="the address to listen on"),
    port: int = typer.Option(8000, "--port", help="the TCP port to listen on"),
    workers: int = typer.Option(1, "--workers", min=1, help="server processes (each keeps its own follower)"),
) -> None:
    """The HTTP API (OpenAPI at /openapi.json, docs at /docs), keeping the projections current as facts commit."""
    import uvicorn

    uvicorn.run("ledger.api.app:create_app", factory=True, host=host, port=port, workers=workers,
                log_level="warning", access_log=False, proxy_headers=False)


def follow(interval: float, as_json: bool) -> None:
    """Apply new facts as they commit until SIGTERM or SIGINT; one line per run, with the lag."""
    from ledger.cli.output import count
    from ledger.projector.follow import Follower

    def report(run, state) -> None:
        line = {"mode": run.mode, "path": run.path, "facts_applied": run.facts_applied,
                "from_position": run.from_position, "to_position": run.to_position, "seconds": round(run.seconds, 3),
                "risk_from_position": run.risk_from_position, "head": state.head,
                "finance_lag_facts": state.finance.facts, "risk_lag_facts": state.risk.facts,
                "finance_lag_seconds": round(state.finance.seconds, 3),
                "risk_lag_seconds": round(state.risk.seconds, 3)}
        get_logger().info("projections_followed", **line)
        if as_json:
            sys.stdout.write(orjson.dumps(line).decode() + "\n")
        else:
            positions = f"positions {run.from_position:,}→{run.to_position:,}"
            done = (f"risk and sales views: {positions}" if run.mode == "risk" else
                    f"{run.mode}" + (f" ({run.path})" if run.path else "") + f": {count(run.facts_applied, 'fact')}, "
                    + positions)
            print(f"{done} in {run.seconds:.2f} s; lag: Finance "
                  f"{count(state.finance.facts, 'fact')} {state.finance.seconds:.1f} s, Risk "
                  f"{count(state.risk.facts, 'fact')} {state.risk.seconds:.1f} s")
        sys.stdout.flush()

    try:
        with store() as db:
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
        print(f"stopped after {count(follower.state.runs, 'run')}, {count(follower.state.facts_applied, 'fact')} "
              "applied")
