"""structlog setup: one key=value event per command, JSON when stderr is not a terminal."""

from __future__ import annotations

import logging
import sys

import structlog


def configure_logging() -> None:
    """JSON events on stderr for machines; on a terminal only warnings, unless LEDGER_LOG_LEVEL says otherwise.

    A person at a terminal reads the command's own output (and a one-line error); a job runner
    gets one JSON event per command to ship to its log store.
    """
    import os

    tty = sys.stderr.isatty()
    renderer = structlog.dev.ConsoleRenderer(colors=False) if tty else structlog.processors.JSONRenderer()
    level_name = os.environ.get("LEDGER_LOG_LEVEL") or ("WARNING" if tty else "INFO")
    level = getattr(logging, level_name.upper(), logging.INFO)
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=_StderrLoggerFactory(),
        cache_logger_on_first_use=False,
    )


class _StderrLoggerFactory:
    """A logger on whatever sys.stderr is when an event is written (an embedding process or a test may swap it
    after logging was configured), not on the stream it was at configuration."""

    def __call__(self, *args) -> "structlog.PrintLogger":
        return structlog.PrintLogger(file=sys.stderr)


def get_logger():
    return structlog.get_logger("ledger")
