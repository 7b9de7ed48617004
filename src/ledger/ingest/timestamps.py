"""Timestamps on the ingest hot path: every RFC 3339 shape decided in a few checks, or left to the detailed parser.

`parse_timestamp` (domain/time.py) is the rule: a regular expression, then `datetime.fromisoformat`, then
UTC, with an error message for each way a timestamp can be wrong. It costs ~1 µs, a third of what a whole
usage record costs on the hot path. `plain_micros` decides the same strings in a few character checks and
one `fromisoformat` call of the date and time alone (no offset, so no tzinfo to build or convert):

- layout, checked here: ASCII; `YYYY-MM-DD`; `T`, `t` or a space; `hh:mm:ss`; optionally `.` and one or
  more digits; then `Z`, `z` or one of the 2,880 offsets `±00:00` .. `±23:59` (a dictionary of them);
- values, checked by `fromisoformat`, which reads this layout as `parse_timestamp` has it read: digits,
  month 13, 30 February, hour 24, second 60; digits beyond the microsecond are truncated (SPEC §2);
- an instant outside years 1-9999 in UTC (reachable only through an offset) is left to the detailed path.

Whatever it cannot decide, valid or not, returns None and the caller takes the detailed path, which
names the problem. `tests/unit/test_timestamp_fast_path.py` holds the two equal: the same strings
accepted, the same instant, the same UTC month.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from ledger.store.copybin import PG_EPOCH

NAIVE_PG_EPOCH = PG_EPOCH.replace(tzinfo=None)
MICROSECOND = timedelta(microseconds=1)
fromisoformat = datetime.fromisoformat

# Every offset RFC 3339 allows, as microseconds east of UTC (`-00:00` is UTC, as `parse_timestamp` reads it).
OFFSETS = {f"{sign}{hours:02d}:{minutes:02d}": (1 if sign == "+" else -1) * (hours * 60 + minutes) * 60_000_000
           for sign in "+-" for hours in range(24) for minutes in range(60)}


def plain_micros(text: str) -> tuple[int, str] | None:
    """A timestamp as microseconds since 2000-01-01 UTC (PostgreSQL's epoch) and its UTC month `YYYY-MM`.

    None when the text is not plainly an RFC 3339 timestamp (see the module's docstring): the caller then
    asks `parse_timestamp`, which accepts nothing this refuses and names what is wrong.
    """
    size = len(text)
    if (size < 20 or text[4] != "-" or text[7] != "-" or text[13] != ":" or text[16] != ":"
            or text[10] not in "Tt " or not text.isascii()):
        return None
    last = text[-1]
    if last == "Z" or last == "z":
        end, offset = size - 1, 0
    else:
        end = size - 6
        offset = OFFSETS.get(text[end:])
        if offset is None:
            return None
    if end != 19 and not (end > 20 and text[19] == "." and text[20:end].isdigit()):
        return None
    try:
        micros = (fromisoformat(text[:end]) - NAIVE_PG_EPOCH) // MICROSECOND - offset
    except ValueError:
        return None
    # the local month is the UTC month unless the offset crosses midnight into another month: east of UTC
    # only on the 1st, west of it only from the 28th on
    if offset == 0 or (text[8:10] > "01" if offset > 0 else text[8:10] < "28"):
        return micros, text[:7]
    try:
        utc = NAIVE_PG_EPOCH + timedelta(microseconds=micros)
    except OverflowError:  # before year 1 or after 9999 in UTC: parse_timestamp says so
        return None
    return micros, f"{utc.year:04d}-{utc.month:02d}"


def plain_instant(text: str) -> tuple[datetime, str] | None:
    """`plain_micros` as an aware UTC datetime and its month; None leaves the text to `parse_timestamp`."""
    decided = plain_micros(text)
    if decided is None:
        return None
    if text[-1] == "Z":  # fromisoformat reads it as UTC already, cheaper than adding up the microseconds
        return fromisoformat(text), decided[1]
    return PG_EPOCH + timedelta(microseconds=decided[0]), decided[1]
