"""structlog setup: one key=value event per command, JSON when stderr is not a terminal."""

from __future__ import annotations

import logging
import sys

import structlog


def configure_logging(level_name: str | None = None, *, quiet_off_terminal: bool = False) -> None:
    """JSON events on stderr for machines; on a terminal only warnings, unless a level is given (LEDGER_LOG_LEVEL).

    A person at a terminal reads the command's own output (and a one-line error). Off a terminal the service
    writes one JSON event per request for its log store; the CLI (`quiet_off_terminal`) writes none, so that a
    script's stderr holds only the promised one-line reason, unless a level asks for them.
    """
    import os

    tty = sys.stderr.isatty()
    renderer = structlog.dev.ConsoleRenderer(colors=False) if tty else structlog.processors.JSONRenderer()
    level_name = level_name or os.environ.get("LEDGER_LOG_LEVEL") or None
    if level_name:
        level = getattr(logging, level_name.upper(), logging.INFO)
    elif tty:
        level = logging.WARNING
    else:
        level = logging.INFO
    silent = quiet_off_terminal and not tty and not level_name
    # psycopg warns through the standard library when a rollback fails after the server went away (a killed
    # server mid-ingest); Python's last-resort handler would print that beside the command's own one-line reason.
    # The CLI reports the failure itself; a level asked for, or the service, keeps psycopg's warnings.
    psycopg_log, quiet = logging.getLogger("psycopg"), quiet_off_terminal and not level_name
    psycopg_log.propagate = not quiet
    for handler in [h for h in psycopg_log.handlers if isinstance(h, logging.NullHandler)]:
        psycopg_log.removeHandler(handler)
    if quiet:
        psycopg_log.addHandler(logging.NullHandler())  # without a handler the last-resort handler would print it
    structlog.configure(
        processors=[_drop] if silent else [
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=_StderrLoggerFactory(),
        cache_logger_on_first_use=False,
    )


def _drop(logger, method, event):
    raise structlog.DropEvent


class _StderrLoggerFactory:
    """A logger on whatever sys.stderr is when an event is written (an embedding process or a test may swap it
    after logging was configured), not on the stream it was at configuration."""

    def __call__(self, *args) -> "structlog.PrintLogger":
        return structlog.PrintLogger(file=sys.stderr)


def get_logger():
    return structlog.get_logger("ledger")
