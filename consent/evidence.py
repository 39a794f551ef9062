"""Evidence of consent: how, where and with which words a person said yes.

A consent is only as good as its proof (docs/rules.md R5, R23): the ledger
keeps, with every event, the wording's SHA-256, the policy version, the form
and page, the address and browser it came from. This module says what that
evidence is for each way a consent arrives; ``consent.ledger`` stores it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from consent.policies import current_version_label, wording_hash
from consent.topics import MarketingPolicy, check_topics, current_policy
from kernel.errors import InvalidInput

HOSTED_FORM_ID = "hosted"


@dataclass(frozen=True)
class Evidence:
    """How a consent event was given (R5, R23)."""

    ip_address: str | None = None
    user_agent: str | None = None
    policy_version: str | None = None
    wording_hash: str | None = None
    form_id: str | None = None
    page_url: str | None = None
    language: str | None = None


_HOSTED_WORDING = {
    "en": (
        "Yes, send me {topics} by email. I can unsubscribe at any time with the link in "
        "every email. We handle your data as our privacy policy (version {version}) describes."
    ),
    "sv": (
        "Ja, skicka {topics} till mig via e-post. Jag kan avsluta när som helst med länken i "
        "varje utskick. Vi hanterar dina uppgifter enligt vår integritetspolicy (version {version})."
    ),
}


def hosted_wording(language: str, topic_keys: Sequence[str], policy: MarketingPolicy) -> str:
    """The exact consent sentence the hosted form shows; its hash is the evidence (R23)."""
    lang = language if language in _HOSTED_WORDING else "en"
    labels = [policy.topic(t).label(lang).lower() for t in topic_keys]
    joiner = " och " if lang == "sv" else " and "
    topics = ", ".join(labels[:-1]) + joiner + labels[-1] if len(labels) > 1 else labels[0]
    return _HOSTED_WORDING[lang].format(topics=topics, version=policy.version)


def signup_evidence(
    visit: Evidence,
    *,
    form_id: str | None,
    topics: Sequence[str],
    consent_ticked: bool,
    wording: str | None,
    wording_sha256: str | None,
    policy_version: str | None,
    page_url: str | None,
) -> Evidence:
    """The evidence of a signup form's post: ``visit`` (address, browser,
    language) completed with what the form showed.

    For our own hosted form we know exactly what it showed, whatever was
    posted: the box must be ticked and the wording is rebuilt from the topics.
    Another site's form must send the wording it showed or its SHA-256; a
    consent without it could not be proven.
    """
    language = visit.language or "en"
    if form_id == HOSTED_FORM_ID:
        if not consent_ticked:
            raise InvalidInput("Tick the box to subscribe.", fields={"consent": ["Required."]})
        shown = hosted_wording(language, check_topics(topics), current_policy())
        return replace(
            visit,
            form_id=HOSTED_FORM_ID,
            page_url=page_url,
            policy_version=current_version_label(),
            wording_hash=wording_hash(shown),
        )
    digest = wording_hash(wording) if wording else wording_sha256
    if not digest:
        raise InvalidInput(
            "Send the consent wording the form showed (wording) or its SHA-256 (wording_hash).",
            code="missing_evidence",
            fields={"wording": ["Required."]},
        )
    return replace(
        visit,
        form_id=form_id or "external",
        page_url=page_url,
        policy_version=policy_version or current_version_label(),
        wording_hash=digest,
    )
