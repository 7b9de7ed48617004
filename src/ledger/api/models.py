"""The service's bodies: `ThingIn` what a client sends, `ThingPublic` what it gets back."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt


class CreditIn(BaseModel):
    """A credit; its actor is the authenticated principal, its idempotency key the `Idempotency-Key` header."""

    model_config = ConfigDict(extra="forbid")
    customer_id: str = Field(min_length=1, max_length=256)
    amount_cents: StrictInt
    reason: str
    invoice_id: str | None = Field(default=None, min_length=1, max_length=256)
    memo: str | None = Field(default=None, max_length=2000)


class CreditPublic(BaseModel):
    credit_id: str
    customer_id: str
    invoice_id: str | None
    amount_cents: int
    reason: str
    memo: str | None
    actor: str
    issued_at: str
    position: int
    created: bool


class PeriodClosePublic(BaseModel):
    month: str
    position: int
    actor: str
    closed_at: str
    created: bool
    appended: int


class QuarantinedPublic(BaseModel):
    line_number: int | None
    field: str | None
    reason: str
    raw_text: str


class IngestPublic(BaseModel):
    kind: str
    file: str
    format: str
    read: int
    appended: int
    duplicates: int
    conflicts: int
    quarantined: int
    seconds: float
    events_per_second: float
    first_position: int | None
    last_position: int | None
    exit_code: int
    quarantined_records: list[QuarantinedPublic]
    quarantined_records_truncated: bool


class TokenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    role: str
    expires_at: datetime | None = None


class TokenPublic(BaseModel):
    token_id: str
    name: str
    role: str
    created_at: datetime
    created_by: str
    expires_at: datetime | None
    revoked_at: datetime | None
    revoked_by: str | None


class TokenCreated(TokenPublic):
    token: str


class LagPublic(BaseModel):
    checkpoint: int
    facts: int
    seconds: float | None


class CheckpointsPublic(BaseModel):
    head: int
    finance: LagPublic
    risk: LagPublic
    follower_running: bool
    follower_runs: int
    follower_last_error: str | None


class ProjectPublic(BaseModel):
    from_position: int
    to_position: int
    facts_applied: int
    seconds: float
    mode: str
    reason: str | None
    risk_from_position: int | None
    path: str | None


class AccessPublic(BaseModel):
    access_id: int
    request_id: Any
    at: datetime
    principal: str | None
    token_id: str | None
    role: str | None
    method: str
    path: str
    params: dict[str, Any]
    status: int
    rows_returned: int | None
    facts_appended: int | None
    duration_ms: float
    client: str | None
