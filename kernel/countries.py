"""Country and language codes, checked against ISO 3166-1 and ISO 639-1, and
country names (English and Swedish) read as codes for imports of CRM exports."""

from __future__ import annotations

import gettext
import re
import unicodedata
from functools import cache

import pycountry

from kernel.errors import N_, InvalidInput

COUNTRY_CODES = frozenset(c.alpha_2 for c in pycountry.countries)
LANGUAGE_CODES = frozenset(lang.alpha_2 for lang in pycountry.languages if hasattr(lang, "alpha_2"))

# Names CRMs write that are neither ISO 3166-1 nor in pycountry's translations:
# short forms, older names and the parts of the United Kingdom people put in a
# country field. English first, then Swedish.
_EXTRA_NAMES: dict[str, tuple[str, ...]] = {
    "GB": (
        "UK",
        "U.K.",
        "Great Britain",
        "Britain",
        "England",
        "Scotland",
        "Wales",
        "Northern Ireland",
        "Storbritannien",
        "Skottland",
        "Nordirland",
    ),
    "US": ("USA", "U.S.A.", "U.S.", "United States of America", "Förenta staterna"),
    "NL": ("Holland", "The Netherlands"),
    "CZ": ("Czech Republic", "Tjeckiska republiken"),
    "RU": ("Russia", "Ryssland"),
    "KR": ("South Korea",),
    "TR": ("Turkey",),
    "TW": ("Taiwan",),
    "VN": ("Vietnam",),
    "IR": ("Iran",),
    "SY": ("Syria", "Syrien"),
    "BO": ("Bolivia",),
    "VE": ("Venezuela",),
    "TZ": ("Tanzania",),
    "MD": ("Moldova", "Moldavien"),
    "BY": ("Vitryssland",),
    "MK": ("Macedonia", "Makedonien"),
    "LA": ("Laos",),
    "CD": ("DR Congo", "Kongo-Kinshasa"),
    "CI": ("Ivory Coast", "Elfenbenskusten"),
}


def _name_key(value: str) -> str:
    """A name as compared: accents dropped, case folded, punctuation and
    spacing reduced to single spaces ("Österrike" and "osterrike" meet)."""
    decomposed = unicodedata.normalize("NFKD", value)
    bare = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(re.sub(r"[^0-9a-z]+", " ", bare.casefold()).split())


@cache
def _codes_by_name() -> dict[str, str]:
    """Every name a country is known by, keyed by ``_name_key``: ISO names
    (common, short and official) in English and, from the Swedish translation
    of ISO 3166-1 that pycountry ships (the iso-codes project's gettext
    catalogues), in Swedish; alpha-3 codes; the extra names above. A key two
    countries share is dropped: an ambiguous name is not a country."""
    swedish = gettext.translation("iso3166-1", pycountry.LOCALES_DIR, languages=["sv"])
    found: dict[str, set[str]] = {}

    def add(name: str | None, code: str) -> None:
        if name:
            found.setdefault(_name_key(name), set()).add(code)

    for country in pycountry.countries:
        code = country.alpha_2
        add(country.alpha_3, code)
        for attribute in ("name", "common_name", "official_name"):
            english = getattr(country, attribute, None)
            add(english, code)
            if english:
                add(swedish.gettext(english), code)
    for code, names in _EXTRA_NAMES.items():
        for name in names:
            add(name, code)
    return {key: codes.pop() for key, codes in found.items() if len(codes) == 1 and key}


def normalise_country(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    code = value.strip().upper()
    if code not in COUNTRY_CODES:
        raise InvalidInput(
            f"Unknown country code {value!r}; use ISO 3166-1 alpha-2 such as SE or DE.",
            code="unknown_country",
            fields={"country": ["Unknown ISO 3166-1 alpha-2 code."]},
        )
    return code


def country_code_from_name(value: str | None) -> str | None:
    """The ISO 3166-1 alpha-2 code of a country given by its code (alpha-2 or
    alpha-3) or its name in English or Swedish, in any case and with or
    without accents ("Sverige", "sweden", "SWE", "Österrike", "osterrike").
    CRM exports write names (HubSpot's "Country/Region", Salesforce's "Mailing
    Country"), so an import reads them; raises ``InvalidInput`` for a value
    that names no country, so that the row is rejected rather than stored
    without its country."""
    if value is None or not value.strip():
        return None
    code = value.strip().upper()
    if code in COUNTRY_CODES:
        return code
    found = _codes_by_name().get(_name_key(value))
    if found is None:
        raise InvalidInput(
            N_(
                "Unknown country: use an ISO 3166-1 code (SE) or the country's name in "
                "English or Swedish (Sweden, Sverige)."
            ),
            code="unknown_country",
            fields={"country": ["Unknown country code or name."]},
        )
    return found


def normalise_language(value: str | None) -> str:
    if value is None or value == "":
        return "en"
    code = value.strip().lower()
    if code not in LANGUAGE_CODES:
        raise InvalidInput(
            f"Unknown language code {value!r}; use ISO 639-1 such as sv or en.",
            code="unknown_language",
            fields={"language": ["Unknown ISO 639-1 code."]},
        )
    return code
