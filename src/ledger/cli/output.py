"""Printing for people and for machines: tables, JSON, progress."""

from __future__ import annotations

import sys
import time
from typing import Any, Iterable, Sequence

import orjson


def emit_json(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2, default=str).decode() + "\n")


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    rows = [["" if v is None else str(v) for v in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()
    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])


class IngestProgress:
    """A rich progress bar on a terminal; otherwise a plain line every few seconds on stderr."""

    def __init__(self, label: str, total_bytes: int | None, enabled: bool = True):
        self.label, self.total = label, total_bytes
        self.tty = sys.stderr.isatty()
        self.enabled = enabled
        self._bar = None
        self._started = self._last = time.perf_counter()

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
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(self._task, completed=consumed or 0, records=records)
            return
        now = time.perf_counter()
        if now - self._last >= 5:
            self._last = now
            share = f" ({100 * consumed / self.total:.0f}%)" if consumed and self.total else ""
            print(f"{self.label}: {records:,} records read{share}, {now - self._started:.0f}s",
                  file=sys.stderr, flush=True)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)
