"""Timestamps and months (SPEC §2): RFC 3339 with an offset, kept to the microsecond, UTC inside."""

from __future__ import annotations

import re
from datetime import datetime, timezone

UTC = timezone.utc
# ASCII digits only, offset minutes 00-59, nothing after the offset (not even the newline `$` would allow)
RFC3339 = re.compile(
    r"(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(\.\d+)?([Zz]|[+-]\d{2}:[0-5]\d)", re.ASCII
)
NO_OFFSET = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?", re.ASCII)
# ASCII digits only (`\d` takes any script's), the whole text (`$` lets a newline through); year 0000 is none
MONTH = re.compile(r"(?!0000)([0-9]{4})-(0[1-9]|1[0-2])")


class TimestampError(ValueError):
    """A timestamp that is not RFC 3339 with an offset, or names an impossible instant."""


def parse_timestamp(text: object) -> datetime:
    """An RFC 3339 timestamp with an offset, as an aware UTC datetime truncated to the microsecond."""
    if not isinstance(text, str):
        raise TimestampError(f"must be an RFC 3339 timestamp string, got {type(text).__name__}")
    match = RFC3339.fullmatch(text)
    if match is None:
        if NO_OFFSET.fullmatch(text):
            raise TimestampError(f"timestamp {text!r} has no offset (Z or ±hh:mm required)")
        raise TimestampError(f"{text!r} is not an RFC 3339 timestamp")
    date, clock, fraction, offset = match.groups()
    fraction = (fraction or ".0")[:7]  # finer digits than microseconds are truncated (SPEC §2)
    if offset in ("Z", "z"):
        offset = "+00:00"
    elif int(offset[1:3]) > 23 or int(offset[4:6]) > 59:
        raise TimestampError(f"timestamp {text!r} has offset {offset}; an offset is at most ±23:59")
    if clock.startswith("24"):
        raise TimestampError(f"timestamp {text!r} names hour 24; the hours of a day are 00–23")
    try:
        return datetime.fromisoformat(f"{date}T{clock}{fraction}{offset}").astimezone(UTC)
    except ValueError as error:
        raise TimestampError(f"timestamp {text!r} is impossible: {error}") from None
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00, before the first UTC instant there is
        raise TimestampError(f"timestamp {text!r} is impossible: it falls, in UTC, outside the years 0001–9999") from None


def format_timestamp(moment: datetime) -> str:
    """The canonical text of an instant: UTC, `YYYY-MM-DDTHH:MM:SS.ffffffZ`."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def month_of(moment: datetime) -> str:
    """The UTC calendar month of an instant, `YYYY-MM`."""
    moment = moment.astimezone(UTC)
    return f"{moment.year:04d}-{moment.month:02d}"


def is_month(text: object) -> bool:
    """Whether TEXT is a calendar month written `YYYY-MM`, years 0001-9999."""
    return isinstance(text, str) and MONTH.fullmatch(text) is not None


def parse_month(text: object) -> str:
    """A month written `YYYY-MM`."""
    if not is_month(text):
        raise ValueError(f"must be a month written YYYY-MM, got {text!r}")
    return text


def month_start(month: str) -> datetime:
    """The first instant of a month."""
    year, mon = int(month[:4]), int(month[5:7])
    return datetime(year, mon, 1, tzinfo=UTC)


def next_month(month: str) -> str:
    year, mon = int(month[:4]), int(month[5:7])
    return f"{year + mon // 12:04d}-{mon % 12 + 1:02d}"


def previous_month(month: str) -> str:
    year, mon = int(month[:4]), int(month[5:7])
    return f"{year - (mon == 1):04d}-{(mon - 2) % 12 + 1:02d}"
