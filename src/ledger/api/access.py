"""Every request into the access log (principal, role, method, path and parameters, status, rows or facts,
duration, time), written before the response's last byte is sent, and request body limits.

A pure ASGI middleware, so streamed responses are logged when they end, with their row counts.
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timezone
from typing import Callable
from urllib.parse import parse_qsl

import anyio
import orjson

from ledger.api.metrics import Metrics
from ledger.api.problems import MEDIA_TYPE, Problem
from ledger.logging import get_logger
from ledger.store.access_log import AccessRecord

INGEST_PREFIX = "/v1/facts/"


class BodyTooLarge(Problem):
    def __init__(self, limit: int):
        super().__init__(413, "body_too_large", f"request body exceeds {limit:,} bytes; "
                         "an ingest keeps the batches committed before the limit (re-send the rest)", limit=limit)


class ClientDisconnected(Exception):
    """The client went away before its body ended: an ingest stops, its committed batches stand."""


class AccessLog:
    def __init__(self, app, *, write: Callable[[AccessRecord], None], metrics: Metrics, max_body: int,
                 max_ingest_body: int):
        self.app, self.write, self.metrics = app, write, metrics
        self.max_body, self.max_ingest_body = max_body, max_ingest_body

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        params = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True))
        if "idempotency-key" in headers:
            params["Idempotency-Key"] = headers["idempotency-key"]
        client = scope.get("client")
        record = AccessRecord(uuid.uuid4(), datetime.now(timezone.utc), scope["method"], scope["path"], params,
                              f"{client[0]}:{client[1]}" if client else None)
        scope.setdefault("state", {})["access"] = record
        limit = self.max_ingest_body if scope["path"].startswith(INGEST_PREFIX) else self.max_body
        received = 0
        response_started = False

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def logged_send(message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
                record.status = message["status"]
                message = {**message, "headers": [*message.get("headers", []),
                                                  (b"request-id", str(record.request_id).encode())]}
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                await self._log(scope, record, started)
            await send(message)

        declared = headers.get("content-length")
        try:
            if declared is not None and declared.isdigit() and int(declared) > limit:
                raise BodyTooLarge(limit)
            await self.app(scope, limited_receive, logged_send)
        except BodyTooLarge as problem:
            if response_started:
                raise
            await self._problem(scope, problem, logged_send)

    async def _problem(self, scope, problem: Problem, send) -> None:
        body = orjson.dumps({"type": f"urn:ledger:problem:{problem.rule}", "title": problem.rule.replace("_", " "),
                             "status": problem.status, "detail": problem.detail, "instance": scope["path"],
                             "rule": problem.rule, **problem.extra})
        await send({"type": "http.response.start", "status": problem.status,
                    "headers": [(b"content-type", MEDIA_TYPE.encode()), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

    async def _log(self, scope, record: AccessRecord, started: float) -> None:
        record.duration_ms = (time.perf_counter() - started) * 1000
        route = getattr(scope.get("route"), "path", None) or "unmatched"
        self.metrics.request(record.method, route, record.status)
        try:
            await anyio.to_thread.run_sync(self.write, record)
        except Exception as error:  # the response is answered already: the record goes to the log stream instead
            get_logger().error("access_log_write_failed", error=str(error), request_id=str(record.request_id),
                               principal=record.principal, method=record.method, path=record.path,
                               status=record.status)
