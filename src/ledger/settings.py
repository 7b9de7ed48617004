"""Configuration, read once from the environment (`LEDGER_` prefix) into a frozen object."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from ledger.errors import ConfigurationError


@dataclass(frozen=True)
class Settings:
    """Everything a command needs to know about its environment."""

    database_url: str | None
    home: Path
    currency: str = "USD"
    anomaly_score: float = 6.0
    anomaly_min_units: int = 100
    batch_size: int = 20_000
    build_work_mem: str = "1GB"
    anchor_key: Path | None = None  # Ed25519 private key of `ledger anchor`, outside the database
    anchor_public_key: Path | None = None  # the key anchors must be signed with (default: anchor_key's public half)
    ingest_workers: int | None = None  # parser processes of an ingest (None: cores - 1, at least 2)
    ingest_queue: int = 8  # parsed blocks queued per parser process
    log_level: str | None = None  # None: the entrypoint's default (warnings on a terminal; the CLI is quiet off one)

    @property
    def anchor_key_path(self) -> Path:
        return self.anchor_key or self.home / "anchor-key.pem"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        return cls(
            database_url=env.get("LEDGER_DATABASE_URL") or None,
            home=Path(env.get("LEDGER_HOME") or ".ledger").expanduser().absolute(),
            currency=(env.get("LEDGER_CURRENCY") or "USD").upper(),
            anomaly_score=_number(env, "LEDGER_ANOMALY_SCORE", 6.0),
            anomaly_min_units=_count(env, "LEDGER_ANOMALY_MIN_UNITS", 100, minimum=0),
            batch_size=_count(env, "LEDGER_BATCH_SIZE", 20_000, minimum=1),
            build_work_mem=_memory(env.get("LEDGER_BUILD_WORK_MEM") or "1GB", "LEDGER_BUILD_WORK_MEM"),
            anchor_key=Path(env["LEDGER_ANCHOR_KEY"]).expanduser().absolute() if env.get("LEDGER_ANCHOR_KEY") else None,
            anchor_public_key=(Path(env["LEDGER_ANCHOR_PUBLIC_KEY"]).expanduser().absolute()
                               if env.get("LEDGER_ANCHOR_PUBLIC_KEY") else None),
            ingest_workers=_count(env, "LEDGER_INGEST_WORKERS", None, minimum=0),
            ingest_queue=_count(env, "LEDGER_INGEST_QUEUE", 8, minimum=1),
            log_level=_log_level(env.get("LEDGER_LOG_LEVEL")),
        )


def _memory(value: str, name: str) -> str:
    """A PostgreSQL memory size (`512MB`, `2GB`, ...), checked here rather than by the server mid-run."""
    if not re.fullmatch(r"[1-9][0-9]*(kB|MB|GB)", value.strip()):
        raise ConfigurationError(f"{name}: {value!r} is not a memory size such as 512MB or 2GB", setting=name)
    return value.strip()


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _count(env: Mapping[str, str], name: str, default: int | None, *, minimum: int) -> int | None:
    text = (env.get(name) or "").strip()
    if not text:
        return default
    if not re.fullmatch(r"[0-9]+", text) or int(text) < minimum:
        raise ConfigurationError(f"{name}: {text!r} is not a whole number of at least {minimum}", setting=name)
    return int(text)


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    text = (env.get(name) or "").strip()
    try:
        return float(text) if text else default
    except ValueError:
        raise ConfigurationError(f"{name}: {text!r} is not a number", setting=name) from None


def _log_level(value: str | None) -> str | None:
    if not value or not value.strip():
        return None
    if value.strip().upper() not in LOG_LEVELS:
        raise ConfigurationError(f"LEDGER_LOG_LEVEL: {value!r} is not one of {', '.join(LOG_LEVELS)}",
                                 setting="LEDGER_LOG_LEVEL")
    return value.strip().upper()
