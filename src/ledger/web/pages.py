"""The web pages (`/web/...`): invoice lineage, customer 360, reconciliation, calculations, search.

Server-rendered (Jinja2), plain forms, one vendored chart library; the same roles as the API: `finance` and
`auditor` read every page, only `finance` is offered (and allowed) the forms that change something (credits,
period closes, calculations); `admin` reads the access log; `ingest` has no pages. Every request passes through
the service's access log with the signed-in principal.
"""

from __future__ import annotations

import csv
import io
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qsl, urlencode

import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from fastapi.templating import Jinja2Templates

from ledger import errors, projector
from ledger.api.deps import access_record, count_rows
from ledger.api.problems import status_of
from ledger.audit.trace import trace_customer_month
from ledger.commands.calculations import (
    define_calculation, known_calculations, list_calculations, promote_calculation,
)
from ledger.commands.credits import issue_credit
from ledger.commands.periods import close_period
from ledger.domain.calculations import DefineCalculation, PromoteCalculation, require_defined
from ledger.domain.commands import ClosePeriod, IssueCredit
from ledger.domain.facts import CREDIT_REASONS, PLAN_RULES
from ledger.domain.time import is_month
from ledger.ingest.records import RecordContext
from ledger.logging import get_logger
from ledger.projector.calc_diff import COLUMNS as DIFF_COLUMNS
from ledger.projector.calc_diff import diff as calc_diff
from ledger.store.access_log import list_access
from ledger.store.principals import Principal, authenticate
from ledger.web import queries as q
from ledger.web.session import (
    COOKIE, MAX_AGE, SIGNIN_COOKIE, csrf_ok, csrf_token, principal_of, seal, session_key, unseal,
)

HERE = Path(__file__).resolve().parent
templates = Jinja2Templates(directory=str(HERE / "templates"))
router = APIRouter(prefix="/web", include_in_schema=False)
READERS = ("finance", "auditor")
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                               "img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


# -- formatting ----------------------------------------------------------------------------------------------
def money(cents: Any) -> str:
    """Cents as an amount with two decimals and thousands separators (empty for null)."""
    if cents is None:
        return ""
    cents = int(cents)
    return f"{'-' if cents < 0 else ''}{abs(cents) // 100:,}.{abs(cents) % 100:02d}"


def number(value: Any) -> str:
    return "" if value is None else f"{value:,}" if isinstance(value, int) else str(value)


def when(value: Any) -> str:
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    return "" if value is None else str(value)


templates.env.filters.update(money=money, number=number, when=when)
def qs(base: dict[str, Any], **changes: Any) -> str:
    """A query string: BASE with CHANGES, leaving out empty values."""
    merged = {**base, **changes}
    return urlencode({k: v for k, v in merged.items() if v not in (None, "")})


templates.env.globals.update(urlencode=urlencode, qs=qs)


# -- who is asking -------------------------------------------------------------------------------------------
class SignInRequired(Exception):
    def __init__(self, reason: str = "sign in with a token from `ledger token create`"):
        super().__init__(reason)
        self.reason = reason


class PageRefused(Exception):
    def __init__(self, status: int, title: str, detail: str):
        super().__init__(detail)
        self.status, self.title, self.detail = status, title, detail


@dataclass(frozen=True)
class Viewer:
    principal: Principal
    csrf: str

    @property
    def finance(self) -> bool:
        return self.principal.role == "finance"

    @property
    def reader(self) -> bool:
        return self.principal.role in READERS


def key_of(request: Request) -> bytes:
    state = request.app.state
    if getattr(state, "web_key", None) is None:
        state.web_key = session_key(state.services.settings)
    return state.web_key


def viewer(request: Request) -> Viewer:
    """The signed-in principal (its token still valid), recorded in the access log; else off to sign in."""
    key = key_of(request)
    session = unseal(key, request.cookies.get(COOKIE))
    if session is None:
        raise SignInRequired()
    with request.app.state.services.side.connection() as conn:
        found = principal_of(conn, session.token_id)
    if isinstance(found, str):
        raise SignInRequired(f"your session ended: {found}")
    record = access_record(request)
    if record is not None:
        record.principal, record.token_id, record.role = found.name, found.token_id, found.role
    return Viewer(found, csrf_token(key, session.nonce))


def reader(request: Request, who: Annotated[Viewer, Depends(viewer)]) -> Viewer:
    if not who.reader:
        raise PageRefused(403, "Not for this role",
                          f"role {who.principal.role} may not view {request.url.path} (allowed: finance, auditor)")
    return who


async def form_fields(request: Request) -> dict[str, str]:
    """An url-encoded form's fields (the last value of a repeated name)."""
    body = (await request.body()).decode("utf-8", errors="replace")
    return dict(parse_qsl(body, keep_blank_values=True))


Form = Annotated[dict[str, str], Depends(form_fields)]


def finance_form(request: Request, who: Annotated[Viewer, Depends(viewer)], fields: Form) -> Viewer:
    """A changing form: the finance role only, and the session's CSRF token in the form."""
    if not who.finance:
        raise PageRefused(403, "Not for this role", f"role {who.principal.role} may not {request.method} "
                                                    f"{request.url.path} (allowed: finance)")
    if not csrf_ok(key_of(request), _session_nonce(request), fields.get("csrf")):
        raise PageRefused(403, "Form refused", "the form's CSRF token is missing or not this session's: "
                                               "reload the page and submit again")
    return who


def _session_nonce(request: Request) -> str:
    session = unseal(key_of(request), request.cookies.get(COOKIE))
    return session.nonce if session else ""


Reader = Annotated[Viewer, Depends(reader)]
Signed = Annotated[Viewer, Depends(viewer)]
FinanceForm = Annotated[Viewer, Depends(finance_form)]


def render(request: Request, template: str, who: Viewer | None, status: int = 200, **context: Any) -> HTMLResponse:
    response = templates.TemplateResponse(request, template, {"who": who, **context}, status_code=status)
    response.headers.update(SECURITY_HEADERS)
    return response


def redirect(url: str) -> RedirectResponse:
    response = RedirectResponse(url, status_code=303)
    response.headers.update(SECURITY_HEADERS)
    return response


def connection(request: Request):
    return request.app.state.services.pool.connection()


def settings_of(request: Request):
    return request.app.state.services.settings


def context_of(request: Request, who: Viewer) -> RecordContext:
    moment = datetime.now(timezone.utc)
    return RecordContext(f"web:{who.principal.name}", moment, settings_of(request).currency)


def check_month(month: str | None, field: str = "month") -> str | None:
    if month and not is_month(month):
        raise PageRefused(422, "Bad month", f"{field}: {month!r} is not a month (YYYY-MM)")
    return month or None


# -- sign-in -------------------------------------------------------------------------------------------------
@router.get("/signin")
def signin_form(request: Request, next: str = "/web/") -> HTMLResponse:
    nonce = uuid.uuid4().hex
    response = render(request, "signin.html", None, next=_local(next), form_csrf=csrf_token(key_of(request), nonce))
    response.set_cookie(SIGNIN_COOKIE, nonce, max_age=600, path="/web", httponly=True, samesite="strict")
    return response


@router.post("/signin")
def signin(request: Request, fields: Form) -> Response:
    key = key_of(request)
    if not csrf_ok(key, request.cookies.get(SIGNIN_COOKIE, ""), fields.get("csrf")):
        raise PageRefused(403, "Form refused", "the sign-in form expired or came from elsewhere: open it again")
    token = fields.get("token", "").strip()
    with connection(request) as conn:
        found = authenticate(conn, token, datetime.now(timezone.utc)) if token else "no token given"
    if isinstance(found, str):
        nonce = uuid.uuid4().hex
        response = render(request, "signin.html", None, status=401, next=_local(fields.get("next")),
                          form_csrf=csrf_token(key, nonce), error=f"token refused: {found}")
        response.set_cookie(SIGNIN_COOKIE, nonce, max_age=600, path="/web", httponly=True, samesite="strict")
        return response
    record = access_record(request)
    if record is not None:
        record.principal, record.token_id, record.role = found.name, found.token_id, found.role
    get_logger().info("web_signed_in", principal=found.name, role=found.role, token_id=found.token_id)
    response = redirect(_local(fields.get("next")))
    response.set_cookie(COOKIE, seal(key, found.token_id), max_age=MAX_AGE, path="/web", httponly=True,
                        samesite="strict", secure=request.url.scheme == "https")
    response.delete_cookie(SIGNIN_COOKIE, path="/web")
    return response


@router.post("/signout")
def signout(request: Request, who: Signed, fields: Form) -> Response:
    if not csrf_ok(key_of(request), _session_nonce(request), fields.get("csrf")):
        raise PageRefused(403, "Form refused", "the form's CSRF token is missing or not this session's")
    response = redirect("/web/signin")
    response.delete_cookie(COOKIE, path="/web")
    return response


def _local(url: str | None) -> str:
    """Only a path of these pages to go on to after signing in (never another site)."""
    return url if url and url.startswith("/web/") and not url.startswith("//") else "/web/"


# -- home and search -----------------------------------------------------------------------------------------
@router.get("/")
def home(request: Request, who: Signed) -> HTMLResponse:
    if who.principal.role == "admin":
        return redirect("/web/access")
    if not who.reader:
        return render(request, "home.html", who, status=403)
    with connection(request) as conn:
        verify, head = q.last_verify(conn), q.checkpoint(conn)
        kinds = q.exception_totals(conn, kind=None, month=None, customer=None, min_difference=None)
    return render(request, "home.html", who, verify=verify, checkpoint=head, totals=kinds)


@router.get("/search")
def search(request: Request, who: Reader, q_: Annotated[str, Query(alias="q", max_length=256)] = "") -> Response:
    text = q_.strip()
    found: dict[str, list] = {"invoices": [], "customers": [], "source_ids": []}
    if text:
        with connection(request) as conn:
            found = q.search(conn, text)
        exact = ([f"/web/invoices/{r['invoice_id']}" for r in found["invoices"] if r["invoice_id"] == text]
                 + [f"/web/customers/{r['customer_id']}" for r in found["customers"] if r["customer_id"] == text])
        if len(exact) == 1 and not any(r["source_customer_id"] == text for r in found["source_ids"]):
            return redirect(exact[0])
    count_rows(request, rows=sum(len(v) for v in found.values()))
    return render(request, "search.html", who, text=text, found=found)


# -- invoice lineage -----------------------------------------------------------------------------------------
@router.get("/invoices/{invoice_id}")
def invoice(request: Request, invoice_id: str, who: Reader) -> HTMLResponse:
    with connection(request) as conn:
        projector.project(conn, settings_of(request), risk=False)
        trace = q.invoice_trace(conn, invoice_id)
        inv = trace["invoice"]
        restated = q.restatements(conn, inv["customer_id"], inv["period"]) if inv["customer_id"] else []
        verify = q.last_verify(conn)
    count_rows(request, rows=len(trace["lines"]))
    return render(request, "invoice.html", who, trace=trace, inv=inv, restatements=restated, verify=verify,
                  reasons=CREDIT_REASONS, idempotency_key=str(uuid.uuid4()))


@router.get("/facts")
def facts(request: Request, who: Reader, customer: str, month: str, meter: str,
          after: Annotated[int | None, Query(ge=0)] = None, invoice: str | None = None) -> HTMLResponse:
    check_month(month)
    with connection(request) as conn:
        summary = q.usage_summary(conn, customer, month, meter)
        if summary is None:
            raise PageRefused(404, "No facts", f"no on-time usage of {meter} for {customer} in {month}")
        page = q.facts_page(conn, customer, month, meter, summary, after=after)
    count_rows(request, rows=len(page))
    more = bool(page) and page[-1]["position"] < summary["last_position"] and len(page) == q.FACTS_PAGE
    base = {"customer": customer, "month": month, "meter": meter, **({"invoice": invoice} if invoice else {})}
    return render(request, "facts.html", who, summary=summary, facts=page, customer=customer, month=month,
                  meter=meter, invoice=invoice, after=after, base=base,
                  next_after=page[-1]["position"] if more else None, page_size=q.FACTS_PAGE)


@router.post("/invoices/{invoice_id}/credits")
def credit(request: Request, invoice_id: str, who: FinanceForm, fields: Form) -> Response:
    try:
        amount = int(fields.get("amount_cents", ""))
    except ValueError:
        raise PageRefused(422, "Credit refused", f"amount_cents: {fields.get('amount_cents')!r} is not a whole "
                                                 "number of cents") from None
    with connection(request) as conn:
        inv = q.invoice_trace(conn, invoice_id)["invoice"]
        if inv["customer_id"] is None:
            raise PageRefused(422, "Credit refused", f"invoice {invoice_id} has no customer (unattributed)")
        command = IssueCredit(inv["customer_id"], amount, fields.get("reason", ""), who.principal.name,
                              fields.get("idempotency_key") or str(uuid.uuid4()), invoice_id,
                              fields.get("memo") or None)
        record = access_record(request)
        result = issue_credit(conn, command, now=datetime.now(timezone.utc), ctx=context_of(request, who),
                              provenance={"issued_by": who.principal.name, "token_id": who.principal.token_id,
                                          "request_id": str(record.request_id) if record else None})
    count_rows(request, facts=1 if result.created else 0)
    return redirect(f"/web/invoices/{invoice_id}#credits")


# -- customer 360 --------------------------------------------------------------------------------------------
@router.get("/customers/{customer_id}")
def customer(request: Request, customer_id: str, who: Reader) -> HTMLResponse:
    with connection(request) as conn:
        if not q.customer_exists(conn, customer_id):
            raise PageRefused(404, "No such customer", f"customer {customer_id!r} has no attributes and no months")
        page = {
            "versions": q.customer_versions(conn, customer_id),
            "months": q.customer_months(conn, customer_id),
            "meter_months": q.customer_meter_months(conn, customer_id),
            "daily": q.customer_daily(conn, customer_id),
            "anomalies": q.customer_anomalies(conn, customer_id),
            "invoices": q.customer_invoices(conn, customer_id),
            "credits": q.customer_credits(conn, customer_id),
            "late": q.customer_late(conn, customer_id),
            "restatements": q.restatements(conn, customer_id),
            "links": q.customer_links(conn, customer_id),
        }
        head = q.checkpoint(conn)
    count_rows(request, rows=sum(len(v) for v in page.values()))
    return render(request, "customer.html", who, customer_id=customer_id, checkpoint=head,
                  charts=script_json(chart_data(page)), **page)


def script_json(value: Any) -> str:
    """JSON safe inside a <script> element: no `<`, `>` or `&` to end it early."""
    return (orjson.dumps(value, default=str).decode()
            .replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


def chart_data(page: dict[str, list[dict]]) -> dict[str, Any]:
    """What the three charts plot: usage by meter and month, expected / invoiced / balance by month, daily units
    with the anomalous days marked."""
    months = sorted({r["month"] for r in page["meter_months"]} | {r["month"] for r in page["months"]})
    meters = sorted({r["meter"] for r in page["meter_months"]})
    units = {(r["month"], r["meter"]): r["on_time_units"] for r in page["meter_months"]}
    by_month = {r["month"]: r for r in page["months"]}
    days = sorted({str(r["day"]) for r in page["daily"]})
    daily = {(str(r["day"]), r["meter"]): r["units"] for r in page["daily"]}
    daily_meters = sorted({r["meter"] for r in page["daily"]})
    total = {d: sum(daily.get((d, m), 0) for m in daily_meters) for d in days}
    flagged = {str(a["day"]) for a in page["anomalies"]}
    return {
        "usage": {"labels": months, "series": [{"label": m, "data": [units.get((mo, m), 0) for mo in months]}
                                               for m in meters]},
        "money": {"labels": [m for m in months if m in by_month],
                  "series": [{"label": label, "data": [by_month[m][column] for m in months if m in by_month]}
                             for label, column in (("expected", "expected_cents"), ("invoiced", "invoiced_cents"),
                                                   ("balance", "balance_cents"))]},
        "daily": {"labels": days,
                  "series": [{"label": m, "data": [daily.get((d, m), 0) for d in days]} for m in daily_meters],
                  "anomalies": [{"x": d, "y": total[d]} for d in days if d in flagged]},
    }


@router.get("/customers/{customer_id}/months/{month}")
def customer_month(request: Request, customer_id: str, month: str, who: Reader) -> HTMLResponse:
    check_month(month)
    with connection(request) as conn:
        projector.project(conn, settings_of(request), risk=False)
        trace = trace_customer_month(conn, customer_id, month)
        restated = q.restatements(conn, customer_id, month)
    count_rows(request, rows=len(trace["usage"]))
    return render(request, "customer_month.html", who, trace=trace, customer_id=customer_id, month=month,
                  restatements=restated)


# -- reconciliation ------------------------------------------------------------------------------------------
@router.get("/reconciliation")
def reconciliation(request: Request, who: Reader, kind: str | None = None, month: str | None = None,
                   customer: str | None = None,
                   min_difference: Annotated[str | None, Query(max_length=20)] = None,
                   sort: str = "difference", order: str = "desc",
                   page: Annotated[int, Query(ge=0, le=100_000)] = 0) -> HTMLResponse:
    check_month(month)
    if sort not in q.QUEUE_SORTS:
        raise PageRefused(422, "Bad sort", f"sort: {sort!r} is not one of {', '.join(q.QUEUE_SORTS)}")
    if order not in ("asc", "desc"):
        raise PageRefused(422, "Bad order", f"order: {order!r} is not asc or desc")
    try:
        least = int(min_difference) if min_difference not in (None, "") else None
    except ValueError:
        raise PageRefused(422, "Bad filter", f"min_difference: {min_difference!r} is not a whole number") from None
    filters = {"kind": kind or None, "month": month or None, "customer": customer or None, "min_difference": least}
    with connection(request) as conn:
        found, more = q.exceptions_page(conn, **filters, sort=sort, descending=order == "desc", page=page)
        totals = q.exception_totals(conn, **filters)
        kinds = q.exception_kinds(conn)
        closable = q.open_months(conn) if who.finance else []
        closed = q.closed_months(conn)
    count_rows(request, rows=len(found))
    query = {k: v for k, v in {"kind": kind, "month": month, "customer": customer, "min_difference": least,
                               "sort": sort, "order": order}.items() if v not in (None, "")}
    return render(request, "reconciliation.html", who, exceptions=found, more=more, totals=totals, kinds=kinds,
                  filters=filters, sort=sort, order=order, page=page, query=query, closable=closable,
                  closed=closed, page_size=q.QUEUE_PAGE)


@router.post("/periods/close")
def close(request: Request, who: FinanceForm, fields: Form) -> Response:
    month = check_month(fields.get("month"))
    if not month:
        raise PageRefused(422, "Close refused", "month: choose the month to close")
    if fields.get("confirm") != month:
        raise PageRefused(422, "Close refused", f"confirm: type the month {month} to confirm closing it")
    with connection(request) as conn:
        result = close_period(conn, ClosePeriod(month, who.principal.name), now=datetime.now(timezone.utc),
                              ctx=context_of(request, who))
    count_rows(request, facts=1 if result.created else 0)
    return redirect(f"/web/reconciliation?month={month}")


# -- calculations --------------------------------------------------------------------------------------------
@router.get("/calculations")
def calculations(request: Request, who: Reader) -> HTMLResponse:
    with connection(request) as conn:
        listed = list_calculations(conn)
    return render(request, "calculations.html", who, listed=listed, plan_rules=PLAN_RULES)


@router.post("/calculations")
def define(request: Request, who: FinanceForm, fields: Form) -> Response:
    name = fields.get("name", "").strip()
    with connection(request) as conn:
        result = define_calculation(conn, DefineCalculation(name, fields.get("plan_rule", ""), who.principal.name,
                                                            fields.get("note") or None),
                                    now=datetime.now(timezone.utc), ctx=context_of(request, who))
    count_rows(request, facts=1 if result.created else 0)
    return redirect(f"/web/calculations/{name}")


def _diff(request: Request, conn, name: str):
    known = known_calculations(conn)
    rule = require_defined(name, known)
    report = projector.project(conn, settings_of(request), risk=False)
    return known, calc_diff(conn, in_force=(known.in_force, known.rules[known.in_force]), candidate=(name, rule),
                            head=report.to_position)


def diff_view(result, top: int = 10) -> dict[str, Any]:
    by_customer: dict[str, int] = {}
    for row in result.rows:
        by_customer[row[0]] = by_customer.get(row[0], 0) + row[6]
    ranked = sorted(by_customer.items(), key=lambda kv: (-abs(kv[1]), kv[0]))[:top]
    return {"summary": result.summary(), "top": ranked,
            "by_status": {s: sum(r[6] for r in result.rows if r[3] == s) for s in ("closed", "open")}}


@router.get("/calculations/{name}")
def calculation(request: Request, name: str, who: Reader, promoted: int | None = None) -> HTMLResponse:
    with connection(request) as conn:
        listed = list_calculations(conn)
        known, result = _diff(request, conn, name)
        restated = q.recalculations(conn, promoted) if promoted is not None else []
    count_rows(request, rows=len(result.rows))
    return render(request, "calculation.html", who, name=name, rule=known.rules[name], in_force=known.in_force,
                  listed=listed, view=diff_view(result), promoted=promoted, restatements=restated)


@router.get("/calculations/{name}/diff.csv")
def diff_download(request: Request, name: str, who: Reader) -> Response:
    with connection(request) as conn:
        _, result = _diff(request, conn, name)
    count_rows(request, rows=len(result.rows))

    def lines():
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(DIFF_COLUMNS)
        for i, row in enumerate(result.rows):
            writer.writerow(row)
            if i % 5000 == 4999:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue()

    return StreamingResponse(lines(), media_type="text/csv; charset=utf-8", headers={
        "Content-Disposition": f'attachment; filename="calc-diff-{re.sub(r"[^A-Za-z0-9_.-]", "_", name)}.csv"',
        **SECURITY_HEADERS})


@router.get("/calculations/{name}/promote")
def confirm_promotion(request: Request, name: str, who: Reader) -> HTMLResponse:
    if not who.finance:
        raise PageRefused(403, "Not for this role", f"role {who.principal.role} may not promote a calculation "
                                                    "(allowed: finance)")
    with connection(request) as conn:
        known, result = _diff(request, conn, name)
    return render(request, "promote.html", who, name=name, rule=known.rules[name], in_force=known.in_force,
                  view=diff_view(result))


@router.post("/calculations/{name}/promote")
def promote(request: Request, name: str, who: FinanceForm, fields: Form) -> Response:
    with connection(request) as conn:
        known, result = _diff(request, conn, name)
        view = diff_view(result)
        confirmed = fields.get("difference_cents")
        if confirmed != str(view["summary"]["difference_cents"]) or fields.get("lines") != str(len(result.rows)):
            raise PageRefused(409, "Promotion not confirmed",
                              f"the amounts changed since the confirmation ({confirmed} cents confirmed, "
                              f"{view['summary']['difference_cents']} cents over {len(result.rows)} lines now): "
                              "review the new confirmation")
        outcome = promote_calculation(conn, PromoteCalculation(name, who.principal.name, fields.get("reason", "")),
                                      now=datetime.now(timezone.utc), ctx=context_of(request, who))
        projector.project(conn, settings_of(request), risk=False)
    count_rows(request, facts=1 if outcome.created else 0)
    return redirect(f"/web/calculations/{name}?promoted={outcome.position or 0}")


# -- the access log (auditor, admin) -------------------------------------------------------------------------
@router.get("/access")
def access(request: Request, who: Signed, principal: str | None = None,
           after: Annotated[int | None, Query(ge=0)] = None) -> HTMLResponse:
    if who.principal.role not in ("auditor", "admin"):
        raise PageRefused(403, "Not for this role", f"role {who.principal.role} may not view the access log "
                                                    "(allowed: auditor, admin)")
    with connection(request) as conn:
        found = list_access(conn, principal=principal or None, after=after, limit=200)
    count_rows(request, rows=len(found))
    return render(request, "access.html", who, rows=found, principal=principal,
                  next_after=found[-1]["access_id"] if len(found) == 200 else None)


# -- errors as pages -----------------------------------------------------------------------------------------
def error_page(request: Request, status: int, title: str, detail: str) -> HTMLResponse:
    try:
        who = viewer(request)  # the header names who is signed in, if anyone
    except (SignInRequired, errors.LedgerError):
        who = None
    return render(request, "error.html", who, status=status, title=title, detail=detail)


def install(app) -> None:
    """Mount the pages and their static assets on the service, with HTML error pages under /web."""
    from fastapi.exceptions import RequestValidationError
    from fastapi.staticfiles import StaticFiles
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from ledger.api import problems

    app.include_router(router)
    app.mount("/web/static", StaticFiles(directory=str(HERE / "static")), name="web-static")

    async def on_signin(request: Request, error: SignInRequired):
        if request.method == "GET":
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return redirect("/web/signin?" + urlencode({"next": target}))
        return error_page(request, 401, "Sign in", error.reason)

    async def on_refused(request: Request, error: PageRefused):
        return error_page(request, error.status, error.title, error.detail)

    def for_pages(api_handler, page):
        async def handler(request: Request, error):
            if request.url.path.startswith("/web/") or request.url.path == "/web":
                return page(request, error)
            return await api_handler(request, error)
        return handler

    app.add_exception_handler(SignInRequired, on_signin)
    app.add_exception_handler(PageRefused, on_refused)
    app.add_exception_handler(errors.LedgerError, for_pages(problems.on_ledger_error, lambda r, e: error_page(
        r, status_of(e), "Refused" if status_of(e) < 500 else "Error", str(e))))
    app.add_exception_handler(RequestValidationError, for_pages(problems.on_validation_error, lambda r, e: error_page(
        r, 422, "Bad request", "; ".join(f"{'.'.join(str(p) for p in x['loc'])}: {x['msg']}" for x in e.errors()))))
    app.add_exception_handler(StarletteHTTPException, for_pages(problems.on_http_error, lambda r, e: error_page(
        r, e.status_code, "Not found" if e.status_code == 404 else "Refused", str(e.detail))))
