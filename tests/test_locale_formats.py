"""Dates, times and numbers in the reader's language and zone (docs/i18n.md)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from flask import render_template_string

from kernel import i18n

MOMENT = datetime(2026, 12, 6, 14, 5, tzinfo=UTC)
NBSP, NNBSP = "\u00a0", "\u202f"  # CLDR's group separator in Swedish; before AM/PM


@pytest.mark.parametrize(
    ("language", "zone", "shown"),
    [
        ("sv", "Europe/Stockholm", "6 dec. 2026 15:05 CET"),
        ("sv", "America/New_York", "6 dec. 2026 09:05 EST"),
        ("en", "Europe/Stockholm", f"Dec 6, 2026, 3:05{NNBSP}PM CET"),
        ("en", "America/New_York", f"Dec 6, 2026, 9:05{NNBSP}AM EST"),
    ],
)
def test_a_moment_reads_in_the_language_and_zone_with_the_zone_named(
    app, language: str, zone: str, shown: str
) -> None:
    with app.test_request_context():
        i18n.use_language(language)
        i18n.use_zone(zone)
        assert render_template_string("{{ m|when }}|{{ when(m) }}", m=MOMENT) == f"{shown}|{shown}"


@pytest.mark.parametrize(
    ("language", "count", "day"),
    [("sv", f"1{NBSP}234{NBSP}567", "6 dec. 2026"), ("en", "1,234,567", "Dec 6, 2026")],
)
def test_counts_and_dates_read_the_languages_way(app, language: str, count: str, day: str) -> None:
    with app.test_request_context():
        i18n.use_language(language)
        page = render_template_string("{{ n|number }} {{ d|day }}", n=1234567, d=date(2026, 12, 6))
    assert page == f"{count} {day}"


def test_a_day_is_the_readers_day_not_utcs(app) -> None:
    late = datetime(2026, 12, 31, 23, 30, tzinfo=UTC)
    with app.test_request_context():
        i18n.use_language("en")
        i18n.use_zone("Europe/Helsinki")
        assert i18n.format_day(late) == "Jan 1, 2027"
        i18n.use_zone("America/New_York")
        assert i18n.format_day(late) == "Dec 31, 2026"


def test_without_a_choice_times_are_in_stockholm(app) -> None:
    with app.test_request_context():
        assert i18n.current_zone() == "Europe/Stockholm"
    assert i18n.current_zone() == "Europe/Stockholm"  # outside a request (a worker)


@pytest.mark.parametrize(
    ("country", "zone"),
    [
        ("SE", "Europe/Stockholm"),
        ("fi", "Europe/Helsinki"),
        ("NO", "Europe/Oslo"),
        ("GB", "Europe/London"),
        ("DE", "Europe/Berlin"),  # also Busingen: where nearly everybody lives
        ("ES", "Europe/Madrid"),  # not the Canaries
        ("US", "Europe/Stockholm"),  # several zones, no single guess is right
        (None, "Europe/Stockholm"),
        ("XX", "Europe/Stockholm"),
    ],
)
def test_a_contacts_zone_follows_their_country(country: str | None, zone: str) -> None:
    assert i18n.zone_of_country(country) == zone
