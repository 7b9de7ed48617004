"""Parsing in worker processes while the main process appends: the two cores work at once.

The main process reads lines in chunks (a feeder thread), workers parse and validate them, and
results come back in input order through bounded queues, so memory stays flat whatever the size
of the input. Workers die with their parent (PR_SET_PDEATHSIG), so a kill -9 leaves nothing behind.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import threading
from itertools import islice
from typing import Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")
Line = tuple[int, bytes]


def _die_with_parent() -> None:
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _work(parse: Callable[[list[Line]], list[T]], inbox, outbox) -> None:
    _die_with_parent()
    while True:
        item = inbox.get()
        if item is None:
            outbox.put(None)
            return
        seq, chunk = item
        try:
            outbox.put((seq, parse(chunk), None))
        except BaseException as error:  # reported to the parent, which raises it
            outbox.put((seq, None, f"{type(error).__name__}: {error}"))


def _chunks(lines: Iterable[Line], size: int) -> Iterator[list[Line]]:
    iterator = iter(lines)
    while chunk := list(islice(iterator, size)):
        yield chunk


def parse_in_workers(parse: Callable[[list[Line]], list[T]], lines: Iterable[Line], *, chunk_size: int,
                     workers: int) -> Iterator[list[T]]:
    """Yield `parse(chunk)` for consecutive chunks of `lines`, in order, computed by worker processes."""
    if workers <= 0:
        for chunk in _chunks(lines, chunk_size):
            yield parse(chunk)
        return
    context = mp.get_context("fork")
    depth = int(os.environ.get("LEDGER_INGEST_QUEUE", "8"))
    inbox, outbox = context.Queue(maxsize=depth * workers), context.Queue(maxsize=depth * workers)
    processes = [context.Process(target=_work, args=(parse, inbox, outbox), daemon=True) for _ in range(workers)]
    for process in processes:
        process.start()
    failure: list[BaseException] = []

    def feed() -> None:
        try:
            for seq, chunk in enumerate(_chunks(lines, chunk_size)):
                inbox.put((seq, chunk))
        except BaseException as error:  # e.g. a read error: surfaced in the main thread
            failure.append(error)
        finally:
            for _ in processes:
                inbox.put(None)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    pending: dict[int, list[T]] = {}
    expected, finished = 0, 0
    try:
        while finished < workers:
            item = outbox.get()
            if item is None:
                finished += 1
                continue
            seq, result, error = item
            if error is not None:
                raise RuntimeError(f"a parser worker failed: {error}")
            pending[seq] = result
            while expected in pending:
                yield pending.pop(expected)
                expected += 1
        if failure:
            raise failure[0]
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
            process.join(timeout=5)


def worker_count() -> int:
    """Leave one core to PostgreSQL and the appender (LEDGER_INGEST_WORKERS overrides)."""
    return int(os.environ.get("LEDGER_INGEST_WORKERS") or max(1, (os.cpu_count() or 2) - 1))
