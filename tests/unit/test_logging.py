"""The CLI's stderr holds its own one-line reason only: a driver's warning after the server went away is dropped."""

from __future__ import annotations

import logging

from ledger.logging import configure_logging


class _Seen(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _psycopg_warning_reaches_the_root(seen: _Seen) -> bool:
    seen.messages.clear()
    logging.getLogger("psycopg").warning("error ignored in rollback of <transaction>: server closed the connection")
    return any("error ignored in rollback" in m for m in seen.messages)


def _null_handlers() -> int:
    return sum(isinstance(h, logging.NullHandler) for h in logging.getLogger("psycopg").handlers)


def test_the_cli_off_a_terminal_drops_psycopgs_warnings_and_the_service_keeps_them():
    seen, psycopg_log = _Seen(), logging.getLogger("psycopg")
    logging.getLogger().addHandler(seen)  # on the root: what propagates past psycopg's own logger
    level = psycopg_log.level
    psycopg_log.setLevel(logging.WARNING)  # a library imported earlier in the process may have raised it
    try:
        configure_logging(quiet_off_terminal=True)
        configure_logging(quiet_off_terminal=True)  # configured twice, as an in-process caller may
        assert not _psycopg_warning_reaches_the_root(seen)
        assert _null_handlers() == 1  # one, however often configured, keeping the last-resort handler quiet
        configure_logging("INFO", quiet_off_terminal=True)  # a level asked for keeps them
        assert _psycopg_warning_reaches_the_root(seen)
        configure_logging()
        assert _psycopg_warning_reaches_the_root(seen)
        assert _null_handlers() == 0
    finally:
        configure_logging()
        psycopg_log.setLevel(level)
        logging.getLogger().removeHandler(seen)
