"""`GET /health` and `GET /metrics` (no token: for load balancers and scrapers on the service's network)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, PlainTextResponse

from ledger.api.deps import Svc

router = APIRouter(tags=["system"])


@router.get("/health", summary="The database answers, and the follower runs")
def health(svc: Svc) -> JSONResponse:
    follower = svc.follower.state if svc.follower else None
    try:
        with svc.side.connection(timeout=5) as conn:
            conn.execute("SELECT 1")
        database = "ok"
    except Exception as error:  # reported as the health answer itself
        database = f"unavailable: {str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__}"
    ok = database == "ok"
    body = {"status": "ok" if ok else "unavailable", "database": database,
            "follower": None if follower is None else {"running": follower.running, "last_error": follower.last_error,
                                                      "finance_lag_facts": follower.finance.facts,
                                                      "risk_lag_facts": follower.risk.facts}}
    return JSONResponse(body, status_code=200 if ok else 503)


@router.get("/metrics", response_class=PlainTextResponse, summary="Prometheus text")
def metrics(svc: Svc) -> PlainTextResponse:
    return PlainTextResponse(svc.metrics.render(svc.follower.state if svc.follower else None,
                                                svc.consumers.get() if svc.consumers else None),
                             media_type="text/plain; version=0.0.4")
