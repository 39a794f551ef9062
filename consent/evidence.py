"""Evidence of consent: how, where and with which words a person said yes.

A consent is only as good as its proof (docs/rules.md R5, R23): the ledger
keeps, with every event, the wording's SHA-256, the policy version, the form
and page, the address and browser it came from. This module says what that
evidence is for each way a consent arrives; ``consent.ledger`` stores it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from consent.policies import check_consent_version, current_version_label, wording_hash
from consent.topics import SignupForm, current_policy
from kernel.access import may
from kernel.errors import InvalidInput


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
    # The email whose signed link the person followed, and its campaign: what
    # caused an unsubscribe or objection (set by mailing.subscription_flows
    # from the link, after checking the message was sent to that contact).
    outbox_id: int | None = None
    campaign_id: int | None = None


# R25, need to know: the parts of the evidence that identify the person's device
# or visit. Sales and marketing need the basis, its source, form, policy
# version and wording to answer "may I, and why?"; these only the roles that
# ``may`` take ``evidence.read`` (admin, dpo) see, on the pages and in the API.
IDENTIFYING_EVIDENCE = ("ip_address", "user_agent", "page_url")


def evidence_shown_to(role: str | None, event: dict[str, Any]) -> dict[str, Any]:
    """``event`` (a ledger event as JSON) as ``role`` may see it: without the
    identifying evidence unless the role ``may`` read it."""
    if may(role, "evidence.read"):
        return event
    return {key: value for key, value in event.items() if key not in IDENTIFYING_EVIDENCE}


# How the labels of several topics are joined in a sentence, per language.
_LAST_JOINER = {"en": " and ", "sv": " och "}


def form_wording(form: SignupForm, language: str, topic_keys: Sequence[str], version: str) -> str:
    """The exact consent sentence ``form`` shows in ``language`` for ``topic_keys``
    under policy ``version``: its registered wording with ``{topics}`` and
    ``{version}`` filled in. Its hash is the evidence (R23)."""
    lang = form.language_for(language)
    policy = current_policy()
    labels = [policy.topic(t).label(lang).lower() for t in topic_keys]
    joiner = _LAST_JOINER.get(lang, ", ")
    topics = ", ".join(labels[:-1]) + joiner + labels[-1] if len(labels) > 1 else labels[0]
    return form.wording[lang].format(topics=topics, version=version)


def shown_version(form: SignupForm) -> str:
    """The privacy-policy version ``form`` names: its own, or the current one."""
    return form.policy_version or current_version_label()


def signup_evidence(
    visit: Evidence,
    *,
    form: SignupForm,
    topics: Sequence[str],
    consent_ticked: bool,
    page_url: str | None,
) -> Evidence:
    """The evidence of a signup form's post: ``visit`` (address, browser,
    language) completed with what the registered ``form`` showed.

    Everything about the form comes from the registry (the policy file), never
    from the post: a page that copies a form's fields cannot borrow its
    wording, and no post can name the wording or version it would like
    recorded. Only the page the form sat on is the post's word (and the caller
    has already checked that it lies on the origin that posted).
    """
    language = form.language_for(visit.language)
    asked = form.check_topics(topics)
    if form.is_hosted and not consent_ticked:
        # Our own page has the box and the browser requires it; without it the
        # post did not come from the page whose sentence we would record.
        raise InvalidInput("Tick the box to subscribe.", fields={"consent": ["Required."]})
    version = shown_version(form)
    # R23: once versions are published, a form naming another one proves nothing.
    check_consent_version(version)
    return replace(
        visit,
        language=language,
        form_id=form.id,
        page_url=page_url,
        policy_version=version,
        wording_hash=wording_hash(form_wording(form, language, asked, version)),
    )


# The sentence a re-permission email asks the person to confirm (R23, R24): its
# hash is the wording their confirmation records, under the new version.
REPERMISSION_WORDING = {
    "en": "Yes, I still want {topics} by email. We handle your data as our privacy policy "
    "(version {version}) describes.",
    "sv": "Ja, jag vill fortfarande få {topics} via e-post. Vi hanterar dina uppgifter enligt "
    "vår integritetspolicy (version {version}).",
}


def repermission_wording(language: str, topic_keys: Sequence[str], version: str) -> str:
    """The exact sentence of the re-permission email in ``language`` for ``topic_keys``."""
    lang = language if language in REPERMISSION_WORDING else "en"
    policy = current_policy()
    labels = [policy.topic(t).label(lang).lower() for t in topic_keys]
    joiner = _LAST_JOINER.get(lang, ", ")
    topics = ", ".join(labels[:-1]) + joiner + labels[-1] if len(labels) > 1 else labels[0]
    return REPERMISSION_WORDING[lang].format(topics=topics, version=version)


def repermission_evidence(language: str, topic_keys: Sequence[str], version: str) -> Evidence:
    """What a re-permission request records as shown: the new version and the
    hash of the email's sentence; the person's click is the confirmation."""
    return Evidence(
        policy_version=version,
        wording_hash=wording_hash(repermission_wording(language, topic_keys, version)),
        form_id="repermission",
        language=language,
    )
