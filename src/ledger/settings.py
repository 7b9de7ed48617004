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
            anomaly_score=float(env.get("LEDGER_ANOMALY_SCORE") or 6),
            anomaly_min_units=int(env.get("LEDGER_ANOMALY_MIN_UNITS") or 100),
            batch_size=int(env.get("LEDGER_BATCH_SIZE") or 20_000),
            build_work_mem=_memory(env.get("LEDGER_BUILD_WORK_MEM") or "1GB", "LEDGER_BUILD_WORK_MEM"),
            anchor_key=Path(env["LEDGER_ANCHOR_KEY"]).expanduser().absolute() if env.get("LEDGER_ANCHOR_KEY") else None,
            anchor_public_key=(Path(env["LEDGER_ANCHOR_PUBLIC_KEY"]).expanduser().absolute()
                               if env.get("LEDGER_ANCHOR_PUBLIC_KEY") else None),
        )


def _memory(value: str, name: str) -> str:
    """A PostgreSQL memory size (`512MB`, `2GB`, ...), checked here rather than by the server mid-run."""
    if not re.fullmatch(r"[1-9][0-9]*(kB|MB|GB)", value.strip()):
        raise ConfigurationError(f"{name}: {value!r} is not a memory size such as 512MB or 2GB")
    return value.strip()
