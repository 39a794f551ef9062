"""Country and language codes, checked against ISO 3166-1 and ISO 639-1."""

from __future__ import annotations

import pycountry

from kernel.errors import InvalidInput

COUNTRY_CODES = frozenset(c.alpha_2 for c in pycountry.countries)
LANGUAGE_CODES = frozenset(lang.alpha_2 for lang in pycountry.languages if hasattr(lang, "alpha_2"))


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
