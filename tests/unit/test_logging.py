"""The CLI's stderr holds its own one-line reason only: a driver's warning after the server went away is dropped."""

from __future__ import annotations

import logging

from ledger.logging import configure_logging


def _psycopg_warning_reaches_the_root(caplog) -> bool:
    caplog.clear()
    logging.getLogger("psycopg").warning("error ignored in rollback of <transaction>: server closed the connection")
    return any("error ignored in rollback" in r.getMessage() for r in caplog.records)


def test_the_cli_off_a_terminal_drops_psycopgs_warnings_and_the_service_keeps_them(caplog):
    try:
        configure_logging(quiet_off_terminal=True)
        configure_logging(quiet_off_terminal=True)  # configured twice, as an in-process caller may
        assert not _psycopg_warning_reaches_the_root(caplog)
        assert len(logging.getLogger("psycopg").handlers) == 1  # only the one that keeps the last resort quiet
        configure_logging("INFO", quiet_off_terminal=True)  # a level asked for keeps them
        assert _psycopg_warning_reaches_the_root(caplog)
        configure_logging()
        assert _psycopg_warning_reaches_the_root(caplog)
        assert logging.getLogger("psycopg").handlers == []
    finally:
        configure_logging()
