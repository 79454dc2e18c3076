"""Times as the project stores and reads them: ISO 8601 strings, in UTC where they name no zone
(events' ``timestamp``, OpenSearch's ``stored_at``, a profile's ``updated_at``)."""

from __future__ import annotations

from datetime import datetime, timezone


def parse_time(when: str | datetime) -> datetime:
    """An aware datetime of an ISO 8601 time (``Z``, an offset, or none: UTC), or of a datetime.

    >>> parse_time("2024-05-02T10:00:00Z")
    datetime.datetime(2024, 5, 2, 10, 0, tzinfo=datetime.timezone.utc)
    >>> parse_time("2024-05-02T10:00:00.123456789Z").microsecond  # OpenSearch's ingest timestamp: nanoseconds
    123456
    >>> parse_time("2024-05-01T23:30:00-02:00").utcoffset().total_seconds(), parse_time(datetime(2024, 5, 2)).tzinfo
    (-7200.0, datetime.timezone.utc)
    """
    found = datetime.fromisoformat(when) if isinstance(when, str) else when
    return found.replace(tzinfo=timezone.utc) if found.tzinfo is None else found
