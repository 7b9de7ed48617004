"""The application factory: `ledger.api.app:create_app` (uvicorn `--factory`), reused by the web pages.

The app holds, for its lifetime, one `Database` (the embedded server acquired, or LEDGER_DATABASE_URL), a
connection pool, and a follower thread that keeps the projections current as facts commit.
"""

from __future__ import annotations

import os
import threading
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Mapping

from fastapi import FastAPI
from psycopg_pool import ConnectionPool

import ledger
from ledger import web
from ledger.api import problems
from ledger.api.access import AccessLog
from ledger.api.deps import Services
from ledger.api.metrics import Metrics
from ledger.api.routes import admin, calculations, commands, exports, facts, reads, system
from ledger.logging import configure_logging, get_logger
from ledger.projector.follow import Follower
from ledger.settings import Settings
from ledger.store.access_log import append_access
from ledger.store.database import Database


@dataclass(frozen=True)
class ServiceSettings:
    """The service's own settings (LEDGER_API_ prefix), read once."""

    max_body: int = 1 << 20
    max_ingest_body: int = 16 << 30
    pool_size: int = 16
    follow: bool = True
    follow_interval: float = 5.0
    risk_interval: float = 10.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "ServiceSettings":
        env = os.environ if env is None else env
        return cls(max_body=int(env.get("LEDGER_API_MAX_BODY") or cls.max_body),
                   max_ingest_body=int(env.get("LEDGER_API_MAX_INGEST_BODY") or cls.max_ingest_body),
                   pool_size=int(env.get("LEDGER_API_POOL") or cls.pool_size),
                   follow=(env.get("LEDGER_API_FOLLOW") or "1") not in ("0", "false", "no"),
                   follow_interval=float(env.get("LEDGER_API_FOLLOW_INTERVAL") or cls.follow_interval),
                   risk_interval=float(env.get("LEDGER_API_RISK_INTERVAL") or cls.risk_interval))


def _follow_until_stopped(follower: Follower, retry_after: float) -> None:
    """The follower's thread: a run that fails (a lost connection) is logged and retried; no fact is skipped,
    since every run starts from the committed checkpoint."""
    log = get_logger()
    while not follower.stop.is_set():
        try:
            follower.run()
        except Exception as error:
            follower.state.last_error = f"{type(error).__name__}: {error}".strip()
            log.error("projector_follow_failed", error=follower.state.last_error)
            follower.stop.wait(retry_after)


def create_app(settings: Settings | None = None, service: ServiceSettings | None = None) -> FastAPI:
    """The service: every router, the problem handlers, the access log; resources opened at startup."""
    configure_logging()
    service = service or ServiceSettings.from_env()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        ledger_settings = settings or Settings.from_env()
        db = Database(ledger_settings)
        db.connect().close()  # the server resolved and migrated once, before the first request
        pool = ConnectionPool(db.conninfo, min_size=2, max_size=service.pool_size, open=True,
                              kwargs={"autocommit": True, "application_name": "ledger-api"})
        side_pool = ConnectionPool(db.conninfo, min_size=1, max_size=4, open=True,
                                   kwargs={"autocommit": True, "application_name": "ledger-api-side"})
        services = Services(ledger_settings, db, pool, metrics, side_pool=side_pool)
        thread = None
        if service.follow:
            services.follower = Follower(db, ledger_settings, interval=service.follow_interval,
                                         risk_interval=service.risk_interval)
            thread = threading.Thread(target=_follow_until_stopped, args=(services.follower, 1.0),
                                      name="ledger-follower", daemon=True)
            thread.start()
        app.state.services = services
        get_logger().info("service_started", database=db.target, follow=service.follow)
        try:
            yield
        finally:
            if thread is not None:
                services.follower.stop.set()
                thread.join()
            pool.close()
            side_pool.close()
            db.close()
            get_logger().info("service_stopped")

    app = FastAPI(title="ledger", version=ledger.__version__,
                  description="A finance-grade, event-sourced usage-billing ledger: the CLI's commands and reads, "
                              "with roles and an access log.", lifespan=lifespan)
    problems.install(app)
    for module in (facts, commands, calculations, exports, reads, admin, system):
        app.include_router(module.router)
    web.install(app)  # the pages under /web (ledger.web), with HTML error pages there

    def write(record) -> None:
        with app.state.services.side.connection() as conn:
            append_access(conn, record)

    app.add_middleware(AccessLog, write=write, metrics=metrics, max_body=service.max_body,
                       max_ingest_body=service.max_ingest_body)
    return app
