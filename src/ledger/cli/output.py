"""Printing for people and for machines: numbers that say what they are, tables that fit, JSON, progress.

People read cents with thousands separators (the currency code once per table or report), counts with their noun
in the right number, numbers right-aligned, and tables cut to the terminal's width (a cut cell ends in `…`; the
full text is in `--json`). Machines read JSON: one object or list on stdout, strings as stored.
"""

from __future__ import annotations

import os
import re
import sys
from typing import Any, Iterable, Sequence

import orjson

ELLIPSIS = "…"
GAP = "  "
DEFAULT_WIDTH = 120  # off a terminal, unless COLUMNS says otherwise
MIN_CUT_WIDTH = 8  # a cut column keeps at least this many characters (or its heading's)

# What a terminal would interpret instead of showing: C0 and C1 controls (escape sequences, carriage returns,
# bells), DEL, and the bidirectional marks, embeddings, overrides and isolates that reorder what is shown.
_INTERPRETED = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_NUMBER = re.compile(r"[+\-−]?[0-9][0-9,]*(\.[0-9]+)?( ?%|s)?|[+\-−]?\.[0-9]+")
_IRREGULAR = {"anomaly": "anomalies", "entry": "entries", "is": "are", "was": "were", "batch": "batches"}


def emit_json(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2, default=str).decode() + "\n")


def escape_text(text: str) -> str:
    """The text with every character a terminal would interpret written as its escape (`\\x1b`, `\\u202e`)."""
    return _INTERPRETED.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100
                            else f"\\u{ord(m.group()):04x}", text)


def terminal_safe(value):
    """A copy of a structure with every string escaped for a terminal (text output; JSON stays as stored)."""
    if isinstance(value, str):
        return escape_text(value)
    if isinstance(value, dict):
        return {k: terminal_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [terminal_safe(v) for v in value]
    return value


def cents(value: Any, *, signed: bool = False) -> str:
    """Money for a person: integer cents with thousands separators (`-` when there is none)."""
    if value is None:
        return "-"
    return f"{int(value):+,}" if signed else f"{int(value):,}"


def number(value: Any, *, signed: bool = False) -> str:
    """A count or a quantity with thousands separators (`-` when there is none)."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:+,.2f}" if signed else f"{value:,.2f}"
    return f"{int(value):+,}" if signed else f"{int(value):,}"


def plural(noun: str, n: int) -> str:
    if n == 1:
        return noun
    return _IRREGULAR.get(noun) or (noun + "es" if noun.endswith(("s", "x", "ch", "sh")) else noun + "s")


def count(n: int, noun: str) -> str:
    """`1 fact`, `2 facts`, `1,000 anomalies`: a count with its noun in the right number."""
    return f"{n:,} {plural(noun, n)}"


def yes_no(value: Any) -> str:
    return "-" if value is None else ("yes" if value else "no")


def amount(value: Any, unit: str) -> str:
    """An amount with what it counts: `7,996 cents`, `21 units`."""
    return f"{number(value)} {unit}" if value is not None else "-"


def page_note(shown: int, total: int, noun: str, offset: int = 0) -> str:
    """What a page holds, and how to get the rest when it is not everything."""
    if shown >= total and offset == 0:
        return count(total, noun)
    first = f"{offset + 1:,}–{offset + shown:,}" if offset else f"{shown:,}"
    more = "; --limit/--offset for more" if offset + shown < total else ""
    return f"{first} of {count(total, noun)}{more}"


def terminal_width() -> int:
    """The width to fit: COLUMNS when set, else the terminal's that stdout writes to, else 120 characters."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    try:
        if sys.stdout.isatty():
            return os.get_terminal_size(sys.stdout.fileno()).columns
    except (OSError, ValueError):
        pass
    return DEFAULT_WIDTH


def _is_number(cell: Any) -> bool:
    if isinstance(cell, bool):
        return False
    if isinstance(cell, (int, float)):
        return True
    return isinstance(cell, str) and bool(_NUMBER.fullmatch(cell))


def _text(cell: Any) -> str:
    if cell is None:
        return ""
    if isinstance(cell, bool):
        return yes_no(cell)
    if isinstance(cell, int):
        return f"{cell:,}"
    return escape_text(str(cell))


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[:max(0, width - 1)] + ELLIPSIS


class Columns:
    """Column widths and alignment set from sample rows: numbers right-aligned, text cut with `…` so a line fits
    `width` (default: the terminal's). Ints get thousands separators; booleans read yes/no; controls are escaped.
    Rows after the sample (a streamed listing) keep the sample's widths."""

    def __init__(self, headers: Sequence[str], sample: Iterable[Sequence[Any]], *, width: int | None = None,
                 indent: str = ""):
        raw = [list(row) for row in sample]
        self.headers, self.indent = list(headers), indent
        self.numeric = [any(_is_number(row[i]) for row in raw) and
                        all(row[i] in (None, "", "-") or _is_number(row[i]) for row in raw)
                        for i in range(len(headers))]
        widths = [max([len(h), *(len(_text(r[i])) for r in raw)]) for i, h in enumerate(headers)]
        limit = (width or terminal_width()) - len(indent)
        # cut the widest text column, one character at a time, until the table fits or nothing more can be cut
        while sum(widths) + len(GAP) * (len(widths) - 1) > limit:
            cuttable = [i for i, w in enumerate(widths)
                        if not self.numeric[i] and w > max(MIN_CUT_WIDTH, len(headers[i]))]
            if not cuttable:
                break
            widths[max(cuttable, key=lambda i: widths[i])] -= 1
        self.widths = widths

    def _join(self, cells: Sequence[str]) -> str:
        return (self.indent + GAP.join(_cut(c, w).rjust(w) if self.numeric[i] else _cut(c, w).ljust(w)
                                       for i, (c, w) in enumerate(zip(cells, self.widths)))).rstrip()

    def header(self) -> str:
        return self._join(self.headers)

    def rule(self) -> str:
        return self._join(["-" * w for w in self.widths])

    def line(self, row: Sequence[Any]) -> str:
        return self._join([_text(v) for v in row])


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], *, width: int | None = None) -> str:
    """Rows as aligned columns that fit the terminal (see Columns)."""
    rows = [list(row) for row in rows]
    columns = Columns(headers, rows, width=width)
    return "\n".join([columns.header(), columns.rule(), *(columns.line(r) for r in rows)])


class IngestProgress:
    """A rich progress bar on a terminal's stderr; nothing off a terminal (a script's stderr keeps only errors)."""

    def __init__(self, label: str, total_bytes: int | None, enabled: bool = True):
        self.label, self.total = label, total_bytes
        self.tty = sys.stderr.isatty()
        self.enabled = enabled
        self._bar = None

    def __enter__(self) -> "IngestProgress":
        if self.enabled and self.tty:
            from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn,
                                       TimeRemainingColumn)

            self._bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(),
                                 TextColumn("{task.fields[records]} records"), TimeElapsedColumn(),
                                 TimeRemainingColumn(), transient=True)
            self._bar.__enter__()
            self._task = self._bar.add_task(self.label, total=self.total, records=0)
        return self

    def __call__(self, records: int, consumed: int | None) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=consumed or 0, records=records)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)
