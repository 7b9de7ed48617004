"""The `ledger` command: assembles the command modules' apps, and turns every way a command can end into an exit
code and at most one line on stderr (plus one JSON object on stdout under `--json`).

Each `*_commands` module owns its Typer app and imports nothing of this module; the settings are read once, here,
into the root context (`ledger.cli.runtime`).
"""

from __future__ import annotations

import sys
from typing import Any

import typer
from typer.core import TyperGroup

from ledger.cli import (access_commands, anchor_commands, archive_commands, audit_commands, calc_commands,
                        consume_commands, finance_commands, ingest_commands, quarantine_commands, read_commands,
                        risk_commands, serve_commands, server_commands, token_commands, trace_commands)
from ledger.cli.runtime import Runtime, click_exceptions, report_error, wants_json
from ledger.errors import InvalidArgumentError, LedgerError, UsageError
from ledger.logging import configure_logging

# Ctrl-C at a prompt: Typer's Abort, and its Click copy's where that copy has one (0.29 dropped it)
ABORTS = tuple({typer.Abort, getattr(click_exceptions, "Abort", typer.Abort)})

MODULES = (ingest_commands, finance_commands, calc_commands, read_commands, trace_commands, audit_commands,
           quarantine_commands, risk_commands, anchor_commands, archive_commands, consume_commands, serve_commands,
           token_commands, access_commands, server_commands)


def _undecodable(args: list[str]) -> tuple[int, str] | None:
    """The first argument that is not valid UTF-8 (Python keeps its bytes as lone surrogates)."""
    for index, arg in enumerate(args, start=1):
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            return index, arg.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return None


class LedgerGroup(TyperGroup):
    """The root command: usage errors, refusals and undecodable arguments end as one line and an exit code."""

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        args = list(sys.argv[1:] if args is None else args)
        as_json = wants_json(args)
        try:
            bad = _undecodable(args)
            if bad:
                raise InvalidArgumentError(f"argument {bad[0]}", bad[1], "is not valid UTF-8")
            code = super().main(args, "ledger", complete_var, standalone_mode=False, **extra)
        except LedgerError as error:  # raised outside a command's own handling
            report_error(error, error.exit_code, as_json=as_json)
            code = error.exit_code
        except click_exceptions.NoArgsIsHelpError as error:  # `ledger`, `ledger credit`: what there is to run
            print(error.ctx.get_help())
            code = error.exit_code
        except click_exceptions.ClickException as error:  # usage: an unknown option, a missing argument, a bad value
            context = getattr(error, "ctx", None)
            report_error(UsageError(error.format_message(), command=context.command_path if context else None),
                         error.exit_code, as_json=as_json)
            code = error.exit_code
        except ABORTS:
            print("error: aborted", file=sys.stderr)
            code = 1
        code = code if isinstance(code, int) else 0
        if standalone_mode:
            sys.exit(code)
        return code


app = typer.Typer(cls=LedgerGroup, add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  rich_markup_mode=None, help="A finance-grade, event-sourced usage-billing ledger.")


@app.callback()
def main(context: typer.Context) -> None:
    """A finance-grade, event-sourced usage-billing ledger."""
    context.obj = Runtime.from_env()
    configure_logging(context.obj._settings.log_level if context.obj._settings else None, quiet_off_terminal=True)


for _module in MODULES:
    app.add_typer(_module.app)


def run() -> None:
    app()
