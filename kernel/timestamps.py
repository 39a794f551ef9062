"""Time as the service keeps it: timezone-aware UTC, in Python and in every database."""

from __future__ import annotations

import zoneinfo
from datetime import UTC, datetime
from functools import cache

import sqlalchemy as sa
from sqlalchemy.types import TypeDecorator

# The zone a staff user sees times in until they choose another, and a
# contact's when their country does not settle it (docs/i18n.md): the service's
# people and most of its contacts are in Sweden.
DEFAULT_ZONE = "Europe/Stockholm"


def utcnow() -> datetime:
    return datetime.now(UTC)


@cache
def time_zones() -> frozenset[str]:
    """The IANA zone names this machine's zoneinfo (or the tzdata package) knows."""
    return frozenset(zoneinfo.available_timezones())


def is_zone(name: object) -> bool:
    """Whether ``name`` is an IANA zone name such as "Europe/Stockholm"."""
    return isinstance(name, str) and name in time_zones()


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in Python on every database.

    SQLite has no time zone type, so values are stored naive in UTC and made
    aware again when read; naive input is refused rather than guessed.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use timezone-aware UTC")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
