"""Every text a person reads is in the catalogs, in Swedish (issue 23, done when).

The texts are found the way ``pybabel extract`` finds them (the root's babel.cfg,
keywords ``_`` and ``N_``), from the code and the templates; texts built from a
prefix ("reason." ~ code) are declared with ``N_`` next to their codes. A
second test reads every template for visible text written outside ``_()``.
"""

from __future__ import annotations

import html.parser
import re
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

from consent import privacy_requests
from consent.imports.batches import IMPORT_STATUS_LABELS
from consent.models import (
    BASIS_LABELS,
    DELIVERY_LABELS,
    DELIVERY_STATUSES,
    EVENT_LABELS,
    OBJECTION_CHANNEL_LABELS,
    OBJECTION_CHANNELS,
    Basis,
    EventKind,
)
from consent.policy import REASON_LABELS, Reason
from consent.topics import CHANNEL_LABELS
from crm.models import ACTIVITY_LABELS, ActivityKind
from kernel.models import ROLE_LABELS, Role
from mailing.models import CAMPAIGN_STATUS_LABELS, CampaignStatus

ROOT = Path(__file__).resolve().parents[1]
SWEDISH = ROOT / "translations" / "sv" / "LC_MESSAGES" / "messages.po"
# _() and N_(), and the two helpers that translate a text they are given:
# run_form's success message and add_staff_page's navigation label (kernel.pages).
KEYWORDS = {"_": None, "N_": None, "run_form": (3,), "add_staff_page": (3,)}


def extracted_texts() -> dict[str, list[str]]:
    """Every msgid babel's extractors find under babel.cfg, with where it is."""
    with (ROOT / "babel.cfg").open() as cfg:
        method_map, options_map = parse_mapping_cfg(cfg)
    found: dict[str, list[str]] = {}
    for filename, line, message, _comments, _context in extract_from_dir(
        ROOT, method_map, options_map, keywords=KEYWORDS
    ):
        for msgid in message if isinstance(message, tuple) else (message,):
            if msgid:
                found.setdefault(msgid, []).append(f"{filename}:{line}")
    return found


def swedish_catalog() -> Catalog:
    with SWEDISH.open("rb") as po:
        return read_po(po, locale="sv")


def lacking_swedish(texts: Iterable[str], catalog: Catalog) -> list[str]:
    """The texts without a usable Swedish entry: none, an empty one or a fuzzy one
    (the service does not use fuzzy entries)."""
    lacking = []
    for text in texts:
        entry = catalog.get(text)
        strings = entry.string if entry is not None else ""
        strings = strings if isinstance(strings, tuple) else (strings,)
        if entry is None or entry.fuzzy or not all(strings):
            lacking.append(text)
    return sorted(lacking)


def test_every_extracted_text_has_a_swedish_translation() -> None:
    texts = extracted_texts()
    missing = [f"{t!r} ({texts[t][0]})" for t in lacking_swedish(texts, swedish_catalog())]
    assert missing == [], "Swedish missing in translations/sv (docs/i18n.md):\n" + "\n".join(
        missing
    )


def test_a_text_whose_swedish_is_removed_is_reported() -> None:
    # The check above, on a catalog with one entry taken out, emptied or fuzzy.
    texts = extracted_texts()
    catalog = swedish_catalog()
    gone, emptied, fuzzy = "Your time zone is saved.", "Time zone", "Save time zone"
    assert {gone, emptied, fuzzy} <= set(texts)
    assert lacking_swedish(texts, catalog) == []
    catalog.delete(gone)
    catalog[emptied].string = ""
    catalog[fuzzy].flags.add("fuzzy")
    assert lacking_swedish(texts, catalog) == sorted([gone, emptied, fuzzy])


def test_the_extraction_finds_python_templates_and_declared_codes() -> None:
    texts = extracted_texts()
    assert "Your time zone is saved." in texts  # Python, _()
    assert "Choose a time zone from the list, such as Europe/Stockholm." in texts  # N_()
    assert "Show times in" in texts  # a template
    assert "reason.objection" in texts  # a code's label, declared with N_()
    assert "Audit log" in texts  # a navigation label (add_staff_page)
    # Every package with texts has its babel.cfg section: a refusal on the
    # connectors' page, a chart's title on the dashboard.
    assert "This connector has not run yet; its first sync reads everything." in texts
    assert "Consents and opt-outs per week" in texts


def _shipped_channels() -> set[str]:
    policy = tomllib.loads((ROOT / "consent" / "default_policy.toml").read_text())
    return set(policy["channels"])


def test_every_code_shown_on_a_page_has_its_label_declared() -> None:
    # A new reason, event or status must come with its N_() label: otherwise
    # extraction cannot see "reason." ~ code and the page shows the bare code.
    families: Mapping[tuple[str, ...], tuple[str, Iterable[str]]] = {
        REASON_LABELS: ("reason.", Reason),
        EVENT_LABELS: ("event.", EventKind),
        ACTIVITY_LABELS: ("activity.", ActivityKind),
        privacy_requests.REQUEST_LABELS: ("request.", privacy_requests.REQUEST_KINDS),
        privacy_requests.STATUS_LABELS: ("status.", privacy_requests.STATUSES),
        privacy_requests.OUTCOME_LABELS: ("outcome.", privacy_requests.OUTCOMES),
        privacy_requests.INBOX_FILTER_LABELS: ("show.", privacy_requests.INBOX_FILTERS),
        DELIVERY_LABELS: ("delivery.", DELIVERY_STATUSES),
        OBJECTION_CHANNEL_LABELS: ("", OBJECTION_CHANNELS),
        ROLE_LABELS: ("", Role),
        BASIS_LABELS: ("", Basis),
        CAMPAIGN_STATUS_LABELS: ("", CampaignStatus),
        IMPORT_STATUS_LABELS: ("", ("queued", "running", "done", "failed")),
        CHANNEL_LABELS: ("", _shipped_channels()),
    }
    for labels, (prefix, codes) in families.items():
        assert sorted(labels) == sorted(prefix + str(code) for code in codes)


# Visible text outside _() -----------------------------------------------------------------

TEMPLATES = ROOT / "templates"
_JINJA = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.S)
_LETTER = re.compile(r"[^\W\d_]")
# Attributes a person reads (or hears from a screen reader).
_READ_ATTRIBUTES = {"title", "alt", "placeholder", "aria-label", "label"}

# Written outside _() on purpose; each says why.
ALLOWED = {
    "Svenska",  # the language switch names each language in itself
    "English",
    "SHA-256",  # the name of a hash function
    "SMTP_URL",  # a setting's name
    "chg_123",  # a placeholder shaped like the data (a change id)
    "Subject:",  # the mail header line the mailing code reads, not a person
}
# Data-shaped placeholders (a CSV column mapping as JSON).
_ALLOWED_PATTERNS = (re.compile(r'\{"[^{}]*\}'),)
# Whole files: the API reference is for developers and in English like the API
# and its Swagger UI (html lang="en").
ALLOWED_FILES = {"api/docs.html"}
# Converted by engineer "public" (issue 23 item 6: public pages and mails) on
# i23-public; the integrator empties this list at merge. A file listed here
# that has no bare text left fails the test below, so the list cannot go stale.
PENDING: set[str] = set()


class _VisibleText(html.parser.HTMLParser):
    """Collects the text and read attributes of a template whose Jinja parts are removed."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[int, str]] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._hidden += 1
        values = dict(attrs)
        for name, value in attrs:
            read = name in _READ_ATTRIBUTES or (
                tag == "input" and name == "value" and values.get("type") in ("submit", "button")
            )
            if read and value:
                self._check(value)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._hidden -= 1

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self._check(data)

    def _check(self, text: str) -> None:
        for pattern in _ALLOWED_PATTERNS:
            text = pattern.sub(" ", text)
        words = [w for w in text.split() if w not in ALLOWED]
        if any(_LETTER.search(w) for w in words):
            self.found.append((self.getpos()[0], " ".join(text.split())[:80]))


def bare_texts(path: Path) -> list[tuple[int, str]]:
    """Text a person reads in a template, written outside a translation call."""
    # Every {{ }}, {% %} and {# #} goes, keeping its line breaks for the line numbers:
    # what they print is either _() or data.
    source = _JINJA.sub(lambda m: "\n" * m.group(0).count("\n"), path.read_text())
    parser = _VisibleText()
    parser.feed(source)
    parser.close()
    return parser.found


def _templates() -> list[str]:
    return sorted(
        str(p.relative_to(TEMPLATES))
        for p in TEMPLATES.rglob("*")
        if p.suffix in (".html", ".txt") and str(p.relative_to(TEMPLATES)) not in ALLOWED_FILES
    )


def test_no_template_has_visible_text_outside_a_translation() -> None:
    bare = [
        f"templates/{name}:{line}: {text}"
        for name in _templates()
        if name not in PENDING
        for line, text in bare_texts(TEMPLATES / name)
    ]
    assert bare == [], "wrap these in _() (docs/i18n.md):\n" + "\n".join(bare)


def test_the_pending_templates_still_wait_for_their_conversion() -> None:
    done = sorted(
        name
        for name in PENDING
        if not (TEMPLATES / name).exists() or not bare_texts(TEMPLATES / name)
    )
    assert done == [], "converted: take these off PENDING in tests/test_translations.py"


def test_bare_text_is_found_in_text_and_read_attributes(tmp_path: Path) -> None:
    page = tmp_path / "page.html"
    page.write_text(
        '<p>{{ _("Fine") }} · 12</p>\n<p>Hello {{ name }}</p>\n'
        '<img alt="A chart" src="x.svg"><input type="submit" value="Send">\n'
        '<script>var words = "not read";</script><p title="{{ _("Fine") }}">Svenska</p>'
    )
    assert bare_texts(page) == [(2, "Hello"), (3, "A chart"), (3, "Send")]
