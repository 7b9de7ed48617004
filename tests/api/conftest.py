"""A real `ledger serve` process on localhost over its own database, driven through httpx."""

from __future__ import annotations

import os
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import psycopg
import pytest

from ledger.store.principals import ROLES, create_token, revoke_token
from tests.conftest import LEDGER_BIN, with_dbname


@dataclass
class Service:
    url: str
    db_url: str
    tokens: dict[str, str]  # role (or "revoked", "expired") -> token
    process: subprocess.Popen
    log: Path
    env: dict = field(default_factory=dict)

    def client(self, role: str | None = None, **kwargs) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.tokens[role]}"} if role else {}
        return httpx.Client(base_url=self.url, headers={**headers, **kwargs.pop("headers", {})}, timeout=120,
                            **kwargs)

    def head(self) -> int:
        with psycopg.connect(self.db_url, autocommit=True) as conn:
            return conn.execute("SELECT greatest((SELECT max(position) FROM usage_facts),"
                                " (SELECT max(notification_id) FROM ledger_events))").fetchone()[0] or 0

    def access_rows(self, request_id: str) -> list[tuple]:
        with psycopg.connect(self.db_url, autocommit=True) as conn:
            return conn.execute("SELECT principal, role, method, path, status, rows_returned, facts_appended"
                                " FROM api_access_log WHERE request_id = %s", (request_id,)).fetchall()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_service(db_url: str, home: Path, extra_env: dict | None = None) -> Service:
    now = datetime.now(timezone.utc)
    tokens = {}
    with psycopg.connect(db_url, autocommit=True) as conn:
        for role in ROLES:
            tokens[role], _ = create_token(conn, name=f"{role}@example.com", role=role, created_by="pytest", now=now)
        tokens["revoked"], row = create_token(conn, name="gone@example.com", role="finance", created_by="pytest",
                                              now=now)
        revoke_token(conn, row["token_id"], revoked_by="pytest", now=now)
        tokens["expired"], _ = create_token(conn, name="old@example.com", role="finance", created_by="pytest",
                                            now=now - timedelta(days=2), expires_at=now - timedelta(days=1))
    port = free_port()
    log = home / "serve.log"
    home.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "LEDGER_DATABASE_URL": db_url, "LEDGER_HOME": str(home), "LEDGER_API_FOLLOW_INTERVAL": "1",
           "LEDGER_API_RISK_INTERVAL": "1", **(extra_env or {})}
    process = subprocess.Popen([LEDGER_BIN, "serve", "--port", str(port)], env=env, stdout=log.open("wb"),
                               stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"ledger serve did not start: {log.read_text()}")
        time.sleep(0.2)
    return Service(url, db_url, tokens, process, log, env)


def stop_service(service: Service) -> None:
    service.process.terminate()
    try:
        service.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        service.process.kill()
        raise


@pytest.fixture(scope="module")
def module_db(pg_admin, template_db) -> str:
    name = f"ledger_api_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    yield with_dbname(pg_admin, name)
    with psycopg.connect(pg_admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def service(module_db, tmp_path_factory) -> Service:
    running = start_service(module_db, tmp_path_factory.mktemp("serve"), {"LEDGER_API_MAX_BODY": "65536"})
    yield running
    stop_service(running)
