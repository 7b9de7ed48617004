"""Finance's commands: `POST /v1/credits` (idempotent by its `Idempotency-Key` header) and
`POST /v1/periods/{month}/close`. The actor is always the authenticated principal."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated

from fastapi import APIRouter, Header, Request, Response

from ledger.api.deps import Conn, Finance, Svc, access_record, count_rows
from ledger.api.models import CreditIn, CreditPublic, PeriodClosePublic
from ledger.commands.credits import issue_credit
from ledger.commands.periods import close_period
from ledger.domain.commands import ClosePeriod, IssueCredit
from ledger.ingest.records import RecordContext
from ledger.logging import get_logger

router = APIRouter(prefix="/v1", tags=["commands"])


def _provenance(request: Request, who) -> dict:
    record = access_record(request)
    return {"issued_by": who.name, "token_id": who.token_id,
            "request_id": str(record.request_id) if record else None}


@router.post("/credits", response_model=CreditPublic, status_code=201,
             responses={200: {"description": "an idempotent repeat: the first credit, nothing appended"},
                        409: {"description": "the key was used with another body"}},
             summary="Issue a credit (`ledger credit issue`)")
def credit(body: CreditIn, request: Request, response: Response, who: Finance, conn: Conn, svc: Svc,
           idempotency_key: Annotated[str, Header(alias="Idempotency-Key", min_length=1, max_length=256)]
           ) -> CreditPublic:
    command = IssueCredit(body.customer_id, body.amount_cents, body.reason, who.name, idempotency_key,
                          body.invoice_id, body.memo)
    moment = datetime.now(timezone.utc)
    result = issue_credit(conn, command, now=moment, provenance=_provenance(request, who),
                          ctx=RecordContext(f"api:{who.name}", moment, svc.settings.currency))
    get_logger().info("credit_issued" if result.created else "credit_repeated", position=result.position,
                      credit_id=idempotency_key, amount_cents=body.amount_cents, actor=who.name)
    if not result.created:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    count_rows(request, facts=1 if result.created else 0)
    svc.metrics.appended("credits", 1 if result.created else 0)
    c = result.credit
    return CreditPublic(credit_id=c["credit_id"], customer_id=c["customer_id"], invoice_id=c.get("invoice_id"),
                        amount_cents=c["amount_cents"], reason=c["reason"], memo=c.get("memo"), actor=c["actor"],
                        issued_at=str(c["issued_at"]), position=result.position, created=result.created)


@router.post("/periods/{month}/close", response_model=PeriodClosePublic, status_code=201,
             responses={200: {"description": "closed already: the first close, nothing appended"}},
             summary="Close a month (`ledger period close`)")
def close(month: str, request: Request, response: Response, who: Finance, conn: Conn, svc: Svc
          ) -> PeriodClosePublic:
    moment = datetime.now(timezone.utc)
    result = close_period(conn, ClosePeriod(month, who.name), now=moment,
                          ctx=RecordContext(f"api:{who.name}", moment, svc.settings.currency))
    get_logger().info("period_closed" if result.created else "period_already_closed", month=month,
                      position=result.position, actor=result.actor)
    if not result.created:
        response.status_code = 200
    count_rows(request, facts=1 if result.created else 0)
    svc.metrics.appended("period_closes", 1 if result.created else 0)
    return PeriodClosePublic(month=month, position=result.position, actor=result.actor,
                             closed_at=str(result.closed_at), created=result.created,
                             appended=1 if result.created else 0)
