"""Finance's calculations: define, promote (the actor is the principal), diff and list (`ledger calc`)."""

from __future__ import annotations

from datetime import datetime, timezone

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from ledger import projector
from ledger.api.deps import Conn, Finance, Reader, Svc, count_rows
from ledger.api.routes.reads import json_response
from ledger.commands.calculations import define_calculation, known_calculations, list_calculations, promote_calculation
from ledger.domain.calculations import DefineCalculation, PromoteCalculation, require_defined
from ledger.ingest.records import RecordContext
from ledger.projector.calc_diff import COLUMNS, diff

router = APIRouter(prefix="/v1/calculations", tags=["commands"])


class CalculationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    plan_rule: str
    note: str | None = Field(default=None, max_length=2000)


class PromotionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=2000)


def _answer(result, name: str, request: Request, response: Response) -> dict:
    response.status_code = 201 if result.created else 200
    count_rows(request, facts=1 if result.created else 0)
    return {"name": name, "plan_rule": result.plan_rule, "position": result.position, "created": result.created,
            "appended": 1 if result.created else 0}


@router.put("/{name}", status_code=201, summary="Define a calculation (`ledger calc define`)")
def define(name: str, body: CalculationIn, request: Request, response: Response, who: Finance, conn: Conn,
           svc: Svc) -> dict:
    moment = datetime.now(timezone.utc)
    result = define_calculation(conn, DefineCalculation(name, body.plan_rule, who.name, body.note), now=moment,
                                ctx=RecordContext(f"api:{who.name}", moment, svc.settings.currency))
    return _answer(result, name, request, response)


@router.post("/{name}/promote", status_code=201, summary="Put a calculation in force (`ledger calc promote`)")
def promote(name: str, body: PromotionIn, request: Request, response: Response, who: Finance, conn: Conn,
            svc: Svc) -> dict:
    moment = datetime.now(timezone.utc)
    result = promote_calculation(conn, PromoteCalculation(name, who.name, body.reason), now=moment,
                                 ctx=RecordContext(f"api:{who.name}", moment, svc.settings.currency))
    return _answer(result, name, request, response)


@router.get("/{name}/diff", summary="What promoting NAME now would change (`ledger calc diff`)")
def calculation_diff(name: str, request: Request, who: Reader, conn: Conn, svc: Svc) -> Response:
    known = known_calculations(conn)
    rule = require_defined(name, known)
    report = projector.project(conn, svc.settings, risk=False)
    result = diff(conn, in_force=(known.in_force, known.rules[known.in_force]), candidate=(name, rule),
                  head=report.to_position)
    count_rows(request, rows=len(result.rows))
    return json_response({"lines": [dict(zip(COLUMNS, row)) for row in result.rows], "summary": result.summary()})


@router.get("", summary="Definitions and promotions (`ledger calc list`)")
def calculations(who: Reader, conn: Conn) -> Response:
    return json_response(list_calculations(conn))
