"""Input streams: a file or standard input, plain or gzip (detected by its magic bytes), read as lines.

Lines are yielded as bytes with their 1-based number, so memory stays flat whatever the file size
and invalid UTF-8 is found per record, not per file. A UTF-8 byte order mark at the start is skipped.
A gzip stream that is cut short or corrupt stops the read with an InputFileError saying so: the lines
before it have been yielded whole, the line it cut is not.
"""

from __future__ import annotations

import gzip
import io
import os
import sys
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import BinaryIO

from ledger.errors import InputFileError

GZIP_MAGIC = b"\x1f\x8b"
BOM = b"\xef\xbb\xbf"
READ_BUFFER = 1 << 20


@dataclass
class InputSource:
    """An opened input: its display name (the path, or `-`) and a binary stream."""

    name: str
    stream: BinaryIO
    size: int | None  # bytes on disk, for progress; None for stdin
    compressed: bool = False

    def lines(self) -> Iterator[tuple[int, bytes]]:
        number = 0
        with self._reading():
            for line in self.stream:
                number += 1
                yield number, line.rstrip(b"\r\n")

    def blocks(self, size: int = READ_BUFFER) -> Iterator[tuple[int, bytes]]:
        """The input in blocks of whole lines, each with the number of its first line (for parallel parsing)."""
        number = 1
        with self._reading():
            while block := self.stream.read(size):
                if not block.endswith(b"\n"):
                    block += self.stream.readline()
                yield number, block
                number += block.count(b"\n") + (not block.endswith(b"\n"))

    def first_byte(self) -> bytes:
        """The first byte that is not white space (b"" for an empty input), without consuming anything."""
        head = self.stream.peek(READ_BUFFER) if hasattr(self.stream, "peek") else b""
        return head.lstrip()[:1]

    @contextmanager
    def _reading(self) -> Iterator[None]:
        try:
            yield
        except EOFError:
            raise InputFileError(self.name, "the gzip stream ends before its end marker: the file is truncated"
                                 " (was it copied or downloaded whole?)") from None
        except (gzip.BadGzipFile, zlib.error) as error:
            raise InputFileError(self.name, f"the gzip stream is corrupt: {error}") from None
        except OSError as error:
            raise InputFileError(self.name, f"reading failed: {error.strerror or error}") from None

    def position(self) -> int | None:
        raw = getattr(self, "_raw", None)
        try:
            return raw.tell() if raw is not None else None
        except (OSError, ValueError):
            return None

    def close(self) -> None:
        self.stream.close()


def block_lines(first: int, block: bytes) -> Iterator[tuple[int, bytes]]:
    """The numbered lines of a block from `InputSource.blocks`, as `InputSource.lines` yields them."""
    lines = block.split(b"\n")
    if block.endswith(b"\n"):
        lines.pop()
    if b"\r" not in block:  # no line ends in CR: each is as split
        return zip(range(first, first + len(lines)), lines)
    return ((number, line.rstrip(b"\r\n")) for number, line in enumerate(lines, first))


def open_input(path: str) -> InputSource:
    """Open `path` (or `-` for stdin), decompressing gzip when its first bytes say so."""
    if path == "-":
        raw: BinaryIO = io.BufferedReader(sys.stdin.buffer, READ_BUFFER) if not isinstance(
            sys.stdin.buffer, io.BufferedReader) else sys.stdin.buffer
        name, size = "-", None
    else:
        if not os.path.exists(path):
            raise InputFileError(path, "no such file")
        if os.path.isdir(path):
            raise InputFileError(path, "is a directory, not a file")
        try:
            raw = open(path, "rb", buffering=READ_BUFFER)
        except OSError as error:
            raise InputFileError(path, error.strerror or str(error)) from None
        name, size = os.path.abspath(path), os.path.getsize(path)
    return open_stream(name, raw, size)


def open_stream(name: str, raw: BinaryIO, size: int | None = None) -> InputSource:
    """An input from an open binary stream (a file, or a request body read as it arrives), gzip detected."""
    if not hasattr(raw, "peek"):
        raw = io.BufferedReader(raw, READ_BUFFER)  # type: ignore[arg-type]
    head = raw.peek(2)[:2]  # type: ignore[attr-defined]
    stream: BinaryIO = raw
    if head == GZIP_MAGIC:
        stream = io.BufferedReader(gzip.GzipFile(fileobj=raw, mode="rb"), READ_BUFFER)  # type: ignore[arg-type]
    try:
        if hasattr(stream, "peek") and stream.peek(3)[:3] == BOM:
            stream.read(3)  # a UTF-8 byte order mark says nothing about the records
    except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as error:
        raise InputFileError(name, f"the gzip stream cannot be read: {error}") from None
    source = InputSource(name, stream, size, compressed=head == GZIP_MAGIC)
    source._raw = raw  # type: ignore[attr-defined]
    return source


def infer_format(path: str, explicit: str | None) -> str:
    """The input format: as given, else from the extension (`.csv`, `.cloudevents.json[l]`), else NDJSON."""
    if explicit:
        return explicit
    name = path.removesuffix(".gz")
    if name.endswith(".csv"):
        return "csv"
    if "cloudevents" in os.path.basename(name) or name.endswith(".ce.ndjson"):
        return "cloudevents"
    return "ndjson"
