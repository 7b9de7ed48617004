"""Timestamps on the ingest hot path: every RFC 3339 shape decided in one C call, or left to the detailed parser.

`parse_timestamp` (domain/time.py) is the rule: a regular expression, then `datetime.fromisoformat`, then
UTC, with an error message for each way a timestamp can be wrong. It costs ~1.5 µs, a quarter of what a whole
usage record costs on the hot path. `plain_micros` decides the same strings with `ciso8601.parse_rfc3339`
(~0.1 µs), which reads RFC 3339 as `parse_timestamp` does:

- layout: `YYYY-MM-DD`; `T`, `t` or a space; `hh:mm:ss`; optionally `.` and one or more digits; then `Z`,
  `z` or an offset `±hh:mm` of hours 00-23 and minutes 00-59; nothing before or after, ASCII digits only;
- values: month 13, 30 February, hour 24 and second 60 refused; digits beyond the microsecond are truncated
  (SPEC §2), not rounded;
- an instant outside years 1-9999 in UTC (reachable only through an offset) is left to the detailed path.

Whatever it cannot decide, valid or not, returns None and the caller takes the detailed path, which
names the problem. `tests/unit/test_timestamp_fast_path.py` holds the two equal: the same strings
accepted, the same instant, the same UTC month.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from ciso8601 import parse_datetime_as_naive, parse_rfc3339

from ledger.store.copybin import PG_EPOCH

NAIVE_PG_EPOCH = PG_EPOCH.replace(tzinfo=None)
MICROSECOND = timedelta(microseconds=1)
UTC = timezone.utc

# Every offset RFC 3339 allows, as microseconds east of UTC (`-00:00` is UTC, as `parse_timestamp` reads it).
OFFSETS = {f"{sign}{hours:02d}:{minutes:02d}": (1 if sign == "+" else -1) * (hours * 60 + minutes) * 60_000_000
           for sign in "+-" for hours in range(24) for minutes in range(60)}


def plain_micros(text: str) -> tuple[int, str] | None:
    """A timestamp as microseconds since 2000-01-01 UTC (PostgreSQL's epoch) and its UTC month `YYYY-MM`.

    None when the text is not plainly an RFC 3339 timestamp (see the module's docstring): the caller then
    asks `parse_timestamp`, which accepts nothing this refuses and names what is wrong.
    """
    try:
        moment = parse_rfc3339(text)
    except ValueError:
        return None
    if moment.tzinfo is UTC:  # Z, z, +00:00 or -00:00
        return (moment - PG_EPOCH) // MICROSECOND, text[:7]
    offset = OFFSETS.get(text[-6:])
    if offset is None:  # not an offset ciso8601 spells this way: the detailed path decides
        return None
    # the clock time without its offset, read again as naive: a quarter of what `moment.replace(tzinfo=None)` costs
    micros = (parse_datetime_as_naive(text[:-6]) - NAIVE_PG_EPOCH) // MICROSECOND - offset
    # the local month is the UTC month unless the offset crosses midnight into another month: east of UTC
    # only on the 1st, west of it only from the 28th on
    if text[8:10] > "01" if offset > 0 else text[8:10] < "28":
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
    return PG_EPOCH + timedelta(microseconds=decided[0]), decided[1]
