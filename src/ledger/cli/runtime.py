"""What every command shares: the settings (read once, kept on the root context), the store, refusals, arguments.

A command reads `settings()` and opens `store()`; it never reads the environment itself. Commands that only read
open the store with `create=False`, so a mistyped LEDGER_HOME or an empty database is an error naming it instead
of a new empty store. A refusal is `fail(error)`: one line on stderr, and under `--json` (or `--format json`) the
same as one JSON object on stdout, with the exit code unchanged.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Iterator, NoReturn

import orjson
import psycopg
import typer

from ledger.domain.time import is_month
from ledger.errors import (CommandRefusedError, ConfigurationError, DatabaseUnavailableError, InvalidArgumentError,
                           LedgerError)
from ledger.settings import Settings
from ledger.store.database import Database

try:  # Typer carries its own copy of Click from 0.20 on; its context and usage errors are that copy's
    from typer._click import exceptions as click_exceptions
    from typer._click.globals import get_current_context
except ImportError:  # pragma: no cover - an older Typer on the package's Click
    from click import exceptions as click_exceptions
    from click import get_current_context


@dataclass
class Runtime:
    """The root context's object: the settings, read from the environment once per invocation."""

    _settings: Settings | None = None
    _error: ConfigurationError | None = None
    opened: list[Database] = field(default_factory=list)

    @classmethod
    def from_env(cls) -> "Runtime":
        try:
            return cls(Settings.from_env())
        except ConfigurationError as error:  # reported by the command, in its own output mode
            return cls(None, error)

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            raise self._error  # type: ignore[misc]
        return self._settings


def runtime() -> Runtime:
    root = get_current_context().find_root()
    if not isinstance(root.obj, Runtime):
        root.obj = Runtime.from_env()
    return root.obj


def settings() -> Settings:
    return runtime().settings


def now() -> datetime:
    return datetime.now(timezone.utc)


@contextmanager
def store(*, create: bool = False) -> Iterator[Database]:
    """The store of the settings. `create=True` for commands that append (a first ingest creates the store)."""
    db = Database(settings(), create=create)
    try:
        yield db
    except psycopg.OperationalError as error:
        # the connection was lost mid-command: what committed stands, the open transaction rolled back
        lines = [ln for ln in str(error).strip().splitlines() if ln.strip()]
        raise DatabaseUnavailableError(db.target, (lines[0] if lines else "connection lost") +
                                       "; committed batches stand, re-run to finish") from None
    finally:
        db.close()


def store_line(db: Database, conn: psycopg.Connection) -> str:
    """The store a report read and how many facts it holds."""
    from ledger.cli.output import count
    from ledger.store.queries import fact_count

    return f"store: {db.target}, {count(fact_count(conn), 'fact')}"


# -- refusals ------------------------------------------------------------------------------------------
def wants_json(args: list[str] | None = None, params: dict | None = None) -> bool:
    """Whether the command was asked for JSON: `--json` or `--format json`."""
    if params is not None:
        return bool(params.get("as_json")) or params.get("format") == "json"
    args = args or []
    return "--json" in args or "--format=json" in args or any(
        a == "--format" and b == "json" for a, b in zip(args, args[1:]))


def error_object(error: BaseException, exit_code: int) -> dict:
    """A refusal for machines: its class, exit code, one-line message and typed fields."""
    body: dict = {"error": type(error).__name__, "exit_code": exit_code, "message": str(error)}
    if isinstance(error, CommandRefusedError):
        body["rule"] = error.rule
        body.update({k: v for k, v in error.fields.items() if k not in body})
    for key, value in vars(error).items():
        if not key.startswith("_") and key not in body and key != "fields":
            body[key] = value
    return body


def report_error(error: BaseException, exit_code: int, *, as_json: bool) -> None:
    message = " ".join(str(error).split("\n"))
    print(f"error: {message}", file=sys.stderr)
    if as_json:
        sys.stdout.write(orjson.dumps({k: (str(v) if not isinstance(v, (str, int, float, bool, list, dict,
                                                                        type(None))) else v)
                                       for k, v in error_object(error, exit_code).items()},
                                      option=orjson.OPT_INDENT_2, default=str).decode() + "\n")


def fail(error: LedgerError) -> NoReturn:
    """Refuse: one line on stderr (and the JSON object under --json); exit with the error's code."""
    try:
        params = get_current_context().params
    except RuntimeError:
        params = {}
    report_error(error, error.exit_code, as_json=wants_json(params=params))
    raise typer.Exit(error.exit_code)


# -- arguments -----------------------------------------------------------------------------------------
def month_argument(value: str, option: str = "--month") -> str:
    """A calendar month `YYYY-MM` (2026-13 is not one)."""
    if not is_month(value):
        raise InvalidArgumentError(option, value, "is not a month: write it YYYY-MM, e.g. 2026-01")
    return value


def id_argument(value: str, option: str) -> str:
    """An identifier: not empty. (Any other text may be an id a source system sent; it is looked up as given.)"""
    if not value or not value.strip():
        raise InvalidArgumentError(option, value, "is empty: give the identifier")
    return value


def choice_argument(value: str, option: str, choices: tuple[str, ...] | list[str]) -> str:
    if value not in choices:
        raise InvalidArgumentError(option, value, f"is not one of {', '.join(choices)}")
    return value
