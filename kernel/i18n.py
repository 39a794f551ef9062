"""The service's languages: gettext catalogs read through Flask-Babel.

Templates and Python write English and wrap it in ``_()``; the Swedish (and any
other language) lives in ``translations/<lang>/LC_MESSAGES/messages.po``.
Adding a language is adding one catalog: the folders under ``translations/``
are the languages the service offers. docs/i18n.md says how to extract new
strings and update a catalog.

The catalogs are read from their ``.po`` files when the process first needs
them, compiled in memory: there is no ``.mo`` to forget to rebuild, in a
checkout or in the wheel.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import flask_babel
from babel import Locale
from babel import dates as babel_dates
from babel import numbers as babel_numbers
from babel.core import get_global
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations
from flask import Flask, g, has_request_context, request, session

import service_files
from kernel.errors import N_ as N_  # re-exported beside translate
from kernel.models import StaffUser
from kernel.timestamps import DEFAULT_ZONE, is_zone

SOURCE_LANGUAGE = "en"
SESSION_KEY = "staff_lang"
# Keys such as "reason.objection" name a code; without a catalog entry they
# read as their readable part ("objection").
KEYED_PREFIXES = (
    "reason",
    "event",
    "activity",
    "request",
    "status",
    "outcome",
    "show",
    "delivery",
)


def _catalog_folder() -> Path:
    return service_files.translations()


@functools.cache
def _offered_languages() -> tuple[str, ...]:
    found = sorted(
        p.name for p in _catalog_folder().iterdir() if (p / "LC_MESSAGES" / "messages.po").is_file()
    )
    return (SOURCE_LANGUAGE, *[lang for lang in found if lang != SOURCE_LANGUAGE])


LANGUAGES: tuple[str, ...] = _offered_languages()


@functools.cache
def _translations(language: str) -> NullTranslations:
    path = _catalog_folder() / language / "LC_MESSAGES" / "messages.po"
    if not path.is_file():
        return NullTranslations()
    with path.open("rb") as po:
        catalog = read_po(po, locale=language)
    compiled = io.BytesIO()
    write_mo(compiled, catalog, use_fuzzy=False)
    compiled.seek(0)
    return Translations(fp=compiled, domain="messages")


def catalog(language: str) -> dict[str, str]:
    """Every translated message of ``language``'s catalog, msgid to text."""
    translations = _translations(language)
    return {
        k: v for k, v in getattr(translations, "_catalog", {}).items() if isinstance(k, str) and k
    }


class _CatalogDomain(flask_babel.Domain):
    """Flask-Babel's domain, reading the in-memory catalogs above."""

    def get_translations(self) -> NullTranslations:
        locale = flask_babel.get_locale()
        return _translations(str(locale) if locale else SOURCE_LANGUAGE)


def current_language() -> str:
    """The page's language if it set one (a contact's), else the staff member's
    choice, else the browser's preference, else English."""
    chosen = g.get("page_language") if has_request_context() else None
    if chosen in LANGUAGES:
        return chosen
    if not has_request_context():
        return SOURCE_LANGUAGE
    chosen = session.get(SESSION_KEY)
    if chosen in LANGUAGES:
        return chosen
    return request.accept_languages.best_match(LANGUAGES) or SOURCE_LANGUAGE


def use_language(language: str) -> None:
    """Show the rest of this request in ``language`` (a contact's, on public pages)."""
    g.page_language = language
    flask_babel.refresh()


@contextmanager
def language(language: str) -> Iterator[None]:
    """Text in ``language`` outside a request (mails built by a worker)."""
    with flask_babel.force_locale(language if language in LANGUAGES else SOURCE_LANGUAGE):
        yield


def translate(text: str, **values: object) -> str:
    """``text`` in the current language, with ``%(name)s`` values filled in."""
    result = flask_babel.gettext(text)
    if result == text:
        prefix, dot, rest = text.partition(".")
        keyed = dot and prefix in KEYED_PREFIXES and " " not in text
        if keyed:
            result = rest
        if " " not in result:
            result = result.replace("_", " ")  # a code such as legitimate_interest
    return result % values if values else result


def text_in(language: str, text: str) -> str:
    """``text`` in ``language`` without a request (the catalog's entry or ``text``)."""
    return _translations(language).gettext(text)


# Time zones ----------------------------------------------------------------------------

# Countries spanning several zones whose people nearly all live in one
# (mainland Spain, not the Canaries). Other countries with several zones
# (the United States, Russia, Brazil...) get DEFAULT_ZONE: a guess would be
# wrong for most of them, and every time shown names its zone.
_MAIN_ZONE = {
    "DE": "Europe/Berlin",
    "ES": "Europe/Madrid",
    "PT": "Europe/Lisbon",
    "CY": "Asia/Nicosia",
    "UA": "Europe/Kyiv",
    "CN": "Asia/Shanghai",
    "NZ": "Pacific/Auckland",
}


def zone_of_country(country: str | None) -> str:
    """The zone to show a contact times in: their country's, when it has one
    (or one where nearly everybody lives), else DEFAULT_ZONE."""
    code = (country or "").upper()
    zones = get_global("territory_zones").get(code, [])
    if len(zones) == 1 and is_zone(zones[0]):
        return str(zones[0])
    return _MAIN_ZONE.get(code, DEFAULT_ZONE)


def current_zone() -> str:
    """The zone of this request's times: the page's (a contact's, set with
    ``use_zone``), else the signed-in staff user's, else DEFAULT_ZONE."""
    if not has_request_context():
        return DEFAULT_ZONE
    chosen = g.get("page_zone")
    if is_zone(chosen):
        return str(chosen)
    # kernel.access keeps the request's signed-in user in g.staff_user.
    user = g.get("staff_user")
    if isinstance(user, StaffUser) and is_zone(user.time_zone):
        return user.time_zone
    return DEFAULT_ZONE


def use_zone(zone: str) -> None:
    """Show the rest of this request's times in ``zone`` (a contact's, on public pages)."""
    g.page_zone = zone
    flask_babel.refresh()


# Dates and numbers, per language --------------------------------------------------------
# The filters below are what templates use (docs/i18n.md): ``when`` (a moment,
# with its zone), ``day`` (a date) and ``number`` (a count).


def _locale() -> Locale:
    locale = flask_babel.get_locale() if has_request_context() else None
    return locale or Locale.parse(SOURCE_LANGUAGE)


def format_moment(moment: datetime | None) -> str:
    """A stored UTC moment as the reader's clock shows it, with the zone's
    abbreviation ("6 dec. 2026 15:05 CET", "Dec 6, 2026, 9:05 AM EST")."""
    if moment is None:
        return ""
    locale = _locale()
    local = moment.astimezone(ZoneInfo(current_zone()))
    shown = str(locale.datetime_formats["medium"]).format(
        babel_dates.format_time(local, "short", locale=locale),
        babel_dates.format_date(local, "medium", locale=locale),
    )
    return f"{shown} {local.strftime('%Z')}"


def format_day(day: date | datetime | None) -> str:
    """A date in the reader's language ("6 dec. 2026", "Dec 6, 2026"); a moment
    is first moved to the reader's zone, where its day may differ from UTC's."""
    if day is None:
        return ""
    if isinstance(day, datetime):
        day = day.astimezone(ZoneInfo(current_zone())).date()
    return babel_dates.format_date(day, "medium", locale=_locale())


def format_number(number: int | float | None) -> str:
    """A count in the reader's language ("1 234 567", "1,234,567")."""
    if number is None:
        return ""
    return babel_numbers.format_decimal(number, locale=_locale())


def init_app(app: Flask) -> None:
    babel = flask_babel.Babel()
    babel.init_app(
        app,
        default_locale=SOURCE_LANGUAGE,
        default_translation_directories=str(_catalog_folder()),
        default_timezone=DEFAULT_ZONE,
        locale_selector=current_language,
        timezone_selector=current_zone,
    )
    # Flask-Babel builds its domain on first use; ours reads the catalogs above.
    babel.domain_instance = _CatalogDomain()  # type: ignore[misc]
    for name, function in (("when", format_moment), ("day", format_day), ("number", format_number)):
        app.add_template_filter(function, name)
        app.add_template_global(function, name)
