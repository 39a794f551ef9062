"""Topics, channels, the country rules and the signup forms, read from the policy file (TOML)."""

from __future__ import annotations

import calendar
import functools
import re
import string
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from flask import current_app

from consent.models import Basis
from kernel import i18n
from kernel.countries import normalise_language
from kernel.errors import InvalidInput
from kernel.i18n import N_
from kernel.i18n import translate as _

# The form this service shows itself at GET /subscribe (docs/mail-flows.md).
HOSTED_FORM_ID = "hosted"
# A policy file without [forms.hosted] gets this file's: the hosted page keeps working.
_DEFAULT_POLICY_FILE = Path(__file__).with_name("default_policy.toml")
_FORM_KEYS = frozenset({"origins", "topics", "languages", "wording", "policy_version"})
_FORM_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_PLACEHOLDERS = frozenset({"topics", "version"})
# The labels of the shipped policy's channels (default_policy.toml), declared
# for extraction; a channel another policy file adds shows as its code.
CHANNEL_LABELS = (N_("email"), N_("phone"))


@dataclass(frozen=True)
class Topic:
    key: str
    labels: Mapping[str, str]
    bases: frozenset[Basis]
    # False for a purpose that is not marketing (``marketing = false``), such as
    # linking web visits to the contact (R19): no campaign, form or preference
    # centre offers it, and the permission listings leave it out.
    marketing: bool = True

    @property
    def admits_legitimate_interest(self) -> bool:
        return Basis.LEGITIMATE_INTEREST in self.bases

    def label(self, language: str) -> str:
        return self.labels.get(language) or self.labels.get(i18n.SOURCE_LANGUAGE) or self.key

    def in_text(self, language: str) -> str:
        """The topic's name inside a sentence ("Stop sending me the newsletter",
        "Sluta skicka nyhetsbrevet till mig"): the ``topic.<key>`` entry of
        ``language``'s catalog, which may inflect it, else the label with a
        lower-case first letter (a label such as "EU news" keeps its capitals)."""
        keyed = f"topic.{self.key}"
        named = i18n.text_in(language, keyed)
        if named != keyed:
            return named
        label = self.label(language)
        return label if label[1:2].isupper() else label[:1].lower() + label[1:]


def names_in_text(topics: Sequence[Topic], language: str) -> str:
    """Topics named inside a sentence, joined as the language joins a list
    ("the newsletter, customer surveys and events")."""
    names = [topic.in_text(language) for topic in topics]
    if len(names) < 2:
        return "".join(names)
    with i18n.language(language):
        return _("%(items)s and %(last)s", items=", ".join(names[:-1]), last=names[-1])


def months_before(moment: datetime, months: int) -> datetime:
    """The same moment ``months`` calendar months earlier (the day clamped to the
    month's end): where a basis counted in months began to be too old."""
    index = moment.year * 12 + moment.month - 1 - months
    year, month = divmod(index, 12)
    day = min(moment.day, calendar.monthrange(year, month + 1)[1])
    return moment.replace(year=year, month=month + 1, day=day)


def months_after(moment: datetime, months: int) -> datetime:
    """The same moment ``months`` calendar months later (the day clamped)."""
    return months_before(moment, -months)


# What a spam complaint (an ARF report) is taken to mean ([bounces] complaint).
COMPLAINT_OBJECTION = "objection"  # an objection to marketing by email (GDPR art. 21(3))
COMPLAINT_UNSUBSCRIBE = "unsubscribe"  # an unsubscribe from every topic on every channel


@dataclass(frozen=True)
class BouncePolicy:
    """``[bounces]``: when returned mail makes an address undeliverable, and what a
    complaint means. A hard bounce (5.x.x) always does at once; soft bounces
    (4.x.x) only when ``soft_limit`` of them came within ``soft_window``, so that
    a full mailbox for a week does not lose a good address."""

    soft_limit: int = 3
    soft_window: timedelta = timedelta(days=30)
    complaint: str = COMPLAINT_OBJECTION

    @classmethod
    def from_section(cls, section: Mapping[str, Any]) -> BouncePolicy:
        unknown = set(section) - {"soft_limit", "soft_window_days", "complaint"}
        if unknown:
            raise ValueError(f"[bounces]: unknown keys {sorted(unknown)}")
        limit = section.get("soft_limit", 3)
        days = section.get("soft_window_days", 30)
        for name, value, high in (("soft_limit", limit, 1000), ("soft_window_days", days, 3650)):
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
                raise ValueError(f"[bounces] {name}: a whole number, 1 to {high}")
        complaint = section.get("complaint", COMPLAINT_OBJECTION)
        if complaint not in (COMPLAINT_OBJECTION, COMPLAINT_UNSUBSCRIBE):
            raise ValueError('[bounces] complaint: "objection" or "unsubscribe"')
        return cls(soft_limit=limit, soft_window=timedelta(days=days), complaint=complaint)


@dataclass(frozen=True)
class InterestGround:
    """One legal ground for marketing without consent, as the policy file sets it
    (``[legitimate_interest.customer]``, ``[legitimate_interest.industry_list]``).

    The two are different grounds: an existing customer's contact (GDPR art.
    6(1)(f), and where ePrivacy art. 13(1) applies its customer exception,
    art. 13(2)) and cold B2B marketing to an address from an industry list
    (art. 6(1)(f) only). Each has its own countries and topics, and its own
    time after which it lapses (R1, R3, X19).
    """

    kind: str
    # Countries (ISO 3166-1) whose law admits this ground; elsewhere, consent only.
    countries: frozenset[str]
    # Topics this ground may be used for (each admits legitimate interest).
    topics: frozenset[str]
    # Calendar months after the later of the basis's start and the contact's
    # last interaction when the basis lapses: a customer contact without a
    # company (customer), an address from a list (industry_list).
    lapse_months: int = 24
    # How long a company's contacts keep the customer ground after the
    # company's relationship ended (customer only).
    grace: timedelta = timedelta(0)

    def admits(self, topic: str, country: str | None) -> bool:
        return topic in self.topics and (country or "").upper() in self.countries


@dataclass(frozen=True)
class MarketingPolicy:
    version: str
    topics: Mapping[str, Topic]
    channels: tuple[str, ...]
    double_opt_in_countries: frozenset[str]
    customer: InterestGround
    industry_list: InterestGround
    # Topics a form checkbox never opens without double opt-in, whatever the country.
    always_double_opt_in_topics: frozenset[str] = frozenset({"newsletter"})
    # The registered signup forms by id ([forms.<id>]); a post naming another is refused.
    forms: Mapping[str, SignupForm] = field(default_factory=dict)
    # Years a "do not contact" entry is kept after the refusal ([do_not_contact]
    # keep_years); None: without end (docs/rules.md R22).
    do_not_contact_years: int | None = None
    # R19: the consent-only topic whose consent lets web visits be linked to the
    # contact ([web_tracking] topic), and how long visits are kept (R18).
    web_tracking_topic: str | None = None
    web_visits_kept: timedelta = timedelta(days=3 * 365)
    # What returned mail does to an address ([bounces], docs/policy.md).
    bounces: BouncePolicy = field(default_factory=lambda: BouncePolicy())

    @property
    def marketing_topics(self) -> dict[str, Topic]:
        return {key: topic for key, topic in self.topics.items() if topic.marketing}

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> MarketingPolicy:
        try:
            topics = {
                key: Topic(
                    key=key,
                    labels=dict(spec.get("label", {})),
                    bases=frozenset(Basis(b) for b in spec["bases"]),
                    marketing=bool(spec.get("marketing", True)),
                )
                for key, spec in data["topics"].items()
            }
            interest = data.get("legitimate_interest", {})
            web = data.get("web_tracking", {})
            web_topic = web.get("topic")
            if web_topic is not None and (
                web_topic not in topics or topics[web_topic].bases != {Basis.CONSENT}
            ):
                raise ValueError(f"[web_tracking] topic {web_topic!r} must be a consent-only topic")
            forms = _parse_forms(data.get("forms", {}), topics)
            return cls(
                version=str(data.get("policy_version", "1.0")),
                topics=topics,
                channels=tuple(data.get("channels", ["email"])),
                double_opt_in_countries=frozenset(
                    c.upper() for c in data.get("double_opt_in", {}).get("countries", [])
                ),
                customer=_parse_ground("customer", interest, topics),
                industry_list=_parse_ground("industry_list", interest, topics),
                always_double_opt_in_topics=frozenset(
                    data.get("double_opt_in", {}).get("always_topics", ["newsletter"])
                ),
                forms=forms,
                do_not_contact_years=_keep_years(data.get("do_not_contact", {})),
                web_tracking_topic=web_topic,
                web_visits_kept=timedelta(days=int(web.get("keep_visits_days", 3 * 365))),
                bounces=BouncePolicy.from_section(data.get("bounces", {})),
            )
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            raise RuntimeError(f"The policy file is malformed: {exc!r}") from exc

    @property
    def legitimate_interest_countries(self) -> frozenset[str]:
        """Countries where either ground admits marketing without consent."""
        return self.customer.countries | self.industry_list.countries

    @property
    def customer_grace(self) -> timedelta:
        return self.customer.grace

    def ground(self, kind: str) -> InterestGround:
        return self.customer if kind == "customer" else self.industry_list

    def topic(self, key: str) -> Topic:
        try:
            return self.topics[key]
        except KeyError:
            raise InvalidInput(
                N_("Unknown topic %(topic)r; known topics: %(known)s."),
                values={"topic": key, "known": ", ".join(sorted(self.topics))},
                code="unknown_topic",
                fields={"topic": ["Unknown topic."]},
            ) from None

    def form(self, form_id: str | None) -> SignupForm:
        """The registered form ``form_id`` names; ``UnknownForm`` for any other."""
        found = self.forms.get(form_id or "")
        if found is None:
            raise UnknownForm(
                "This form is not registered with the service; nothing was recorded.",
                fields={"form_id": ["Not a registered form."]},
            )
        return found

    def check_channel(self, channel: str) -> str:
        if channel not in self.channels:
            raise InvalidInput(
                N_("Unknown channel %(channel)r; known channels: %(known)s."),
                values={"channel": channel, "known": ", ".join(self.channels)},
                code="unknown_channel",
                fields={"channel": ["Unknown channel."]},
            )
        return channel

    def requires_double_opt_in(self, country: str | None) -> bool:
        # R8: unknown country counts as one that requires it.
        return country is None or country.upper() in self.double_opt_in_countries

    def requires_double_opt_in_for(self, topic: str, country: str | None) -> bool:
        """R8: whether a ticked form checkbox for ``topic`` still needs the email
        confirmation. Newsletter signups always do."""
        return topic in self.always_double_opt_in_topics or self.requires_double_opt_in(country)


def _keep_years(section: Mapping[str, Any]) -> int | None:
    """``[do_not_contact] keep_years``: a whole number of years, at least one."""
    unknown = set(section) - {"keep_years"}
    if unknown:
        raise ValueError(f"[do_not_contact]: unknown keys {sorted(unknown)}")
    years = section.get("keep_years")
    if years is None:
        return None
    if isinstance(years, bool) or not isinstance(years, int) or not 1 <= years <= 200:
        raise ValueError("[do_not_contact] keep_years: a whole number of years, 1 to 200")
    return years


_GROUND_KEYS = {
    "customer": frozenset({"countries", "topics", "grace_days", "lapse_months"}),
    "industry_list": frozenset({"countries", "topics", "expiry_months"}),
}


def _parse_ground(
    kind: str, interest: Mapping[str, Any], topics: Mapping[str, Topic]
) -> InterestGround:
    """``[legitimate_interest.<kind>]``. Without its ``countries`` the older single
    list (``[legitimate_interest] countries``) serves both grounds, as before
    they were told apart; without ``topics``, every topic that admits
    legitimate interest (docs/policy.md)."""
    where = f"[legitimate_interest.{kind}]"
    spec = interest.get(kind, {})
    if not isinstance(spec, Mapping):
        raise ValueError(f"{where} is a table")
    unknown = set(spec) - _GROUND_KEYS[kind]
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}")
    countries = spec.get("countries", interest.get("countries", []))
    admitting = [k for k, t in topics.items() if t.admits_legitimate_interest]
    chosen = list(spec.get("topics", admitting))
    for key in chosen:
        if key not in admitting:
            raise ValueError(
                f"{where} topics: {key!r} is not a topic that admits legitimate_interest"
            )
    months = int(spec.get("lapse_months" if kind == "customer" else "expiry_months", 24))
    grace = int(spec.get("grace_days", interest.get("customer_grace_days", 0)))
    if months < 1 or grace < 0:
        raise ValueError(f"{where}: periods are positive")
    return InterestGround(
        kind=kind,
        countries=frozenset(str(c).upper() for c in countries),
        topics=frozenset(chosen),
        lapse_months=months,
        grace=timedelta(days=grace) if kind == "customer" else timedelta(0),
    )


def current_policy() -> MarketingPolicy:
    """The marketing policy of the running app (parsed once at start-up)."""
    return current_app.extensions["marketing_policy"]


def check_topics(topic_keys: Sequence[str]) -> tuple[str, ...]:
    """The topics a signup names, each once, in order; all must take consent."""
    policy = current_policy()
    if not topic_keys:
        raise InvalidInput(N_("Choose at least one topic."), fields={"topics": ["Required."]})
    for key in topic_keys:
        if Basis.CONSENT not in policy.topic(key).bases:
            raise InvalidInput(f"Topic {key!r} does not take consent.", code="basis_not_admitted")
    return tuple(dict.fromkeys(topic_keys))


class UnknownForm(InvalidInput):
    """A post names no registered form (``[forms.<id>]``), so nothing proves what it showed."""

    code = "unknown_form"


@dataclass(frozen=True)
class SignupForm:
    """A signup form registered in the policy file (``[forms.<id>]``).

    The registry, not the post, says what a form showed: its exact wording per
    language and the privacy-policy version it names, so the evidence of a
    consent is the server's record of the form (R23). It also says which sites
    may post it, so that a copy of its fields on another page is refused.
    """

    id: str
    # The topics it may ask for (a post may name fewer, never others).
    topics: tuple[str, ...]
    # Language -> the exact consent sentence; may hold {topics} and {version}.
    wording: Mapping[str, str]
    # The languages it exists in; the first is used when a post names another.
    languages: tuple[str, ...]
    # Origins whose pages may post it; None: SIGNUP_ALLOWED_ORIGINS (the hosted
    # form: this service's own origin only, whatever is configured).
    origins: frozenset[str] | None
    # The version the form names; None: the current one (consent.policies).
    policy_version: str | None = None

    @property
    def is_hosted(self) -> bool:
        return self.id == HOSTED_FORM_ID

    def language_for(self, requested: str | None) -> str:
        """The form's language for a post that asks for ``requested``."""
        code = (requested or "").strip().lower()
        return code if code in self.languages else self.languages[0]

    def check_topics(self, topic_keys: Sequence[str]) -> tuple[str, ...]:
        """The topics a post asks for, each once, in order: at least one, and never
        one the form does not offer (its wording did not ask for it)."""
        if not topic_keys:
            raise InvalidInput(N_("Choose at least one topic."), fields={"topics": ["Required."]})
        wanted = tuple(dict.fromkeys(topic_keys))
        others = [key for key in wanted if key not in self.topics]
        if others:
            raise InvalidInput(
                f"The form {self.id!r} does not ask for {', '.join(others)}.",
                code="topic_not_on_form",
                fields={"topics": ["Not offered by this form."]},
            )
        return wanted


def _origin(value: Any) -> str:
    if value == "*":
        return value
    parts = urlsplit(str(value).strip().rstrip("/").lower())
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path:
        raise ValueError(f"an origin is scheme://host[:port], not {value!r}")
    return f"{parts.scheme}://{parts.netloc}"


@functools.cache
def _default_hosted_form() -> Mapping[str, Any]:
    with _DEFAULT_POLICY_FILE.open("rb") as handle:
        spec: Mapping[str, Any] = tomllib.load(handle)["forms"][HOSTED_FORM_ID]
    # Its topics are the default file's; a policy with other topics offers its own.
    return {key: value for key, value in spec.items() if key != "topics"}


def _parse_forms(data: Mapping[str, Any], topics: Mapping[str, Topic]) -> dict[str, SignupForm]:
    specs = dict(data)
    specs.setdefault(HOSTED_FORM_ID, _default_hosted_form())
    return {form_id: _parse_form(form_id, spec, topics) for form_id, spec in specs.items()}


def _parse_form(form_id: str, spec: Mapping[str, Any], topics: Mapping[str, Topic]) -> SignupForm:
    """One ``[forms.<id>]``; a mistake stops the service at start with the key."""
    where = f"[forms.{form_id}]"
    if not _FORM_ID.match(form_id):
        raise ValueError(f"{where}: a form id is letters, digits, '-', '_' or '.'")
    unknown = set(spec) - _FORM_KEYS
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}")
    consent_topics = tuple(k for k, t in topics.items() if Basis.CONSENT in t.bases and t.marketing)
    hosted = form_id == HOSTED_FORM_ID
    asked = tuple(spec["topics"]) if "topics" in spec or not hosted else consent_topics
    for key in asked:
        if key not in consent_topics:
            raise ValueError(f"{where} topics: {key!r} is not a topic that takes consent")
    if not asked:
        raise ValueError(f"{where} topics: at least one")
    try:
        wording = {normalise_language(lang): str(text) for lang, text in spec["wording"].items()}
        languages = tuple(normalise_language(lang) for lang in spec.get("languages", wording))
    except InvalidInput as exc:
        raise ValueError(f"{where}: {exc.message}") from None
    if not languages or any(not wording.get(lang, "").strip() for lang in languages):
        raise ValueError(f"{where} wording: the exact text for each of {list(languages)}")
    for lang, text in wording.items():
        named = {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
        if named - _PLACEHOLDERS:
            raise ValueError(
                f"{where} wording.{lang}: only {{topics}} and {{version}} are filled in "
                f"(write {{{{ and }}}} for a brace), not {sorted(named - _PLACEHOLDERS)}"
            )
    if hosted and "origins" in spec:
        raise ValueError(f"{where} origins: the hosted form is posted from this service only")
    origins = frozenset(_origin(o) for o in spec["origins"]) if "origins" in spec else None
    version = spec.get("policy_version")
    return SignupForm(
        id=form_id,
        topics=asked,
        wording=wording,
        languages=languages,
        origins=origins,
        policy_version=str(version) if version is not None else None,
    )
