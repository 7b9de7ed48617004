"""Errors as RFC 9457 `application/problem+json`, carrying the CLI's one-line reasons.

    Problem (status, rule, detail)     raised by the service itself (401, 403, 413, 415, ...)
    LedgerError                        the library's errors, mapped to a status by their class
    RequestValidationError             a body, query or header that fails its model: 422, each field named
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ledger import errors
from ledger.store.principals import TokenRefusedError

MEDIA_TYPE = "application/problem+json"


class Problem(Exception):
    """A refusal of the service: its status, the rule broken and the one-line reason."""

    def __init__(self, status: int, rule: str, detail: str, headers: dict[str, str] | None = None, **extra: Any):
        self.status, self.rule, self.detail, self.headers, self.extra = status, rule, detail, headers, extra
        super().__init__(detail)


def problem_response(request: Request, status: int, rule: str, detail: str,
                     headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    body = {"type": f"urn:ledger:problem:{rule}", "title": rule.replace("_", " "), "status": status,
            "detail": detail, "instance": request.url.path, "rule": rule, **extra}
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


def status_of(error: errors.LedgerError) -> int:
    if isinstance(error, errors.IdempotencyKeyReusedError):
        return 409
    if isinstance(error, errors.NotFoundError):
        return 404
    if isinstance(error, errors.DatabaseUnavailableError):
        return 503
    if isinstance(error, (errors.CommandRefusedError, TokenRefusedError, errors.InputFileError)):
        return 422
    return 500 if isinstance(error, errors.MigrationError) else 400


def rule_of(error: errors.LedgerError) -> str:
    rule = getattr(error, "rule", None)
    if rule:
        return rule
    name = type(error).__name__.removesuffix("Error")
    return "".join(("_" + c.lower()) if c.isupper() else c for c in name).lstrip("_")


async def on_problem(request: Request, problem: Problem) -> JSONResponse:
    return problem_response(request, problem.status, problem.rule, problem.detail, problem.headers, **problem.extra)


async def on_ledger_error(request: Request, error: errors.LedgerError) -> JSONResponse:
    fields = {k: v for k, v in getattr(error, "fields", {}).items() if isinstance(v, (str, int, list, type(None)))}
    return problem_response(request, status_of(error), rule_of(error), str(error), **fields)


async def on_validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
    found = [{"field": ".".join(str(p) for p in e["loc"]), "reason": e["msg"], "rule": e["type"]}
             for e in error.errors()]
    detail = "; ".join(f"{e['field']}: {e['reason']}" for e in found)
    return problem_response(request, 422, "invalid_request", detail, errors=found)


async def on_http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
    rule = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "http_error")
    return problem_response(request, error.status_code, rule, str(error.detail), getattr(error, "headers", None))


def install(app) -> None:
    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(errors.LedgerError, on_ledger_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
