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
from pathlib import Path

import flask_babel
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations
from flask import Flask, g, has_request_context, request, session

import service_files

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


def init_app(app: Flask) -> None:
    babel = flask_babel.Babel()
    babel.init_app(
        app,
        default_locale=SOURCE_LANGUAGE,
        default_translation_directories=str(_catalog_folder()),
        locale_selector=current_language,
    )
    # Flask-Babel builds its domain on first use; ours reads the catalogs above.
    babel.domain_instance = _CatalogDomain()  # type: ignore[misc]
