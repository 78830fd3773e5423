"""Time zones: the one place an IANA name becomes a `ZoneInfo`, or is found not to be one.

Mapping validation, the quiet-hours gate, rendering and the `in_time_zone` filter all ask here, so a
name is valid (or not) the same way everywhere.
"""

from __future__ import annotations

import functools
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

# IANA names are short; the bound also keeps huge strings from events out of the cache.
MAX_NAME = 64


def find_zone(name: object) -> ZoneInfo | None:
    """The zone called `name`, or None when it is not a known IANA time zone name."""
    if not isinstance(name, str) or not name or len(name) > MAX_NAME:
        return None
    return _zone(name)


@functools.lru_cache(maxsize=1024)
def _zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    # OSError: a tzdata directory ("America") or a name the file system cannot open.
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


def zone_or_default(name: str | None, default: str = "UTC") -> ZoneInfo:
    """The recipient's zone: `name` when valid, else `default`, else UTC."""
    return find_zone(name) or find_zone(default) or ZoneInfo("UTC")
