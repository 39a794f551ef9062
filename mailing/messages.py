"""Turning an outbox row into a MIME message: templates, signed links, headers.

Rendering happens right before sending, in the worker, from ids kept in the
row: no address and no rendered body wait in the queue, and a link is
signed at the moment it leaves.
"""

from __future__ import annotations

import email.policy
import hashlib
import json
import re
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, getaddresses
from typing import Any

from flask import current_app, render_template
from markupsafe import Markup, escape

from consent.models import ALL
from consent.subscriptions import get_request
from consent.tokens import LinkInvalid, Purpose, make_token
from consent.topics import current_policy
from crm.countries import normalise_language
from crm.models import Contact, utcnow
from extensions import db
from mailing.models import Campaign, OutboxMessage

LANGUAGES = ("en", "sv")


def page_language(value: str | None) -> str:
    """The language of a public page or email: sv or en (the default)."""
    try:
        code = normalise_language(value)
    except Exception:
        return "en"
    return code if code in LANGUAGES else "en"


def _url(path: str) -> str:
    return current_app.config["PUBLIC_BASE_URL"] + path


def confirm_url(request_id: int) -> str:
    return _url("/confirm/" + make_token(Purpose.CONFIRM, {"r": request_id}))


def unsubscribe_url(contact_id: int, topic: str, message_id: int | None = None) -> str:
    payload: dict[str, Any] = {"c": contact_id, "t": topic}
    if message_id is not None:
        payload["m"] = message_id
    return _url("/unsubscribe/" + make_token(Purpose.UNSUBSCRIBE, payload))


def preferences_url(contact_id: int) -> str:
    return _url("/preferences/" + make_token(Purpose.PREFERENCES, {"c": contact_id}))


def privacy_verify_url(request_id: int) -> str:
    return _url("/privacy/verify/" + make_token(Purpose.VERIFY_ADDRESS, {"p": request_id}))


def sender_domain() -> str:
    pairs = getaddresses([current_app.config["MAIL_FROM"]])
    address = pairs[0][1] if pairs else ""
    return address.rpartition("@")[2] or "localhost"


def message_id_for(idempotency_key: str) -> str:
    """Deterministic, so that a resend after a lost reply is recognisably the same mail."""
    digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]
    return f"<{digest}@{sender_domain()}>"


def _context(row: OutboxMessage, contact: Contact) -> dict[str, Any]:
    policy = current_policy()
    lang = page_language(row.language)
    params = row.params or {}
    context: dict[str, Any] = {"lang": lang, "name": contact.name, "params": params}
    if row.template == "confirm":
        request = get_request(int(params["request_id"]))
        context["topics"] = [policy.topic(t).label(lang) for t in request.topic_keys]
        context["confirm_url"] = confirm_url(request.id)
    if row.template == "unsubscribe_link":
        context["unsubscribe_url"] = unsubscribe_url(contact.id, ALL, row.id)
        context["preferences_url"] = preferences_url(contact.id)
    if row.template == "privacy_verify":
        context["verify_url"] = privacy_verify_url(int(params["request_id"]))
        context["is_erasure"] = params.get("kind") == "erasure"
    if row.template == "welcome":
        context["topics"] = [policy.topic(t).label(lang) for t in params.get("topics", [])]
    if row.template == "campaign":
        campaign = db.session.get(Campaign, row.campaign_id)
        if campaign is None:
            raise LinkInvalid("The campaign of this email is gone.")
        context["subject"] = campaign.subject_sv if lang == "sv" else campaign.subject_en
        context["body"] = campaign.body_sv if lang == "sv" else campaign.body_en
    if row.is_marketing:
        context["unsubscribe_url"] = unsubscribe_url(contact.id, row.topic or ALL, row.id)
        context["preferences_url"] = preferences_url(contact.id)
        context["topic_label"] = policy.topic(row.topic).label(lang) if row.topic else ""
        # GDPR art. 14(3)(b): the first email to an address from an industry list
        # tells the person where we got it and on what basis.
        context["art14_notice"] = contact.art14_notice_owed_since is not None
    return context


_URL = re.compile(r"https?://[^\s<>\"]+")


def _html_paragraphs(text: str) -> list[Markup]:
    out = []
    for block in text.strip().split("\n\n"):
        escaped = str(escape(block))
        linked = _URL.sub(lambda m: f'<a href="{m.group(0)}">{m.group(0)}</a>', escaped)
        out.append(Markup(linked.replace("\n", "<br>\n")))  # noqa: S704 - escaped above
    return out


_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def one_line(text: str) -> str:
    """A header value from free text: line breaks and other control characters
    become one space, so a name or subject can neither add a header nor make the
    message unbuildable (which would lose the email)."""
    return " ".join(_CONTROL.sub(" ", text).split())


def _display_name(name: str | None) -> str:
    """The name in ``To``; dropped when it holds RFC 2047 syntax, which the
    header parser would decode (an encoded CR LF cannot be allowed through)."""
    shown = one_line(name or "")
    return "" if "=?" in shown else shown


# Lines up to RFC 5322's hard limit of 998 characters. At the default 78, the
# email package cannot fold a header holding one long word (the signed
# List-Unsubscribe URL) and writes it as RFC 2047 encoded words, which mailbox
# providers do not read as a List-Unsubscribe URL: no unsubscribe button.
MESSAGE_POLICY = email.policy.SMTP.clone(max_line_length=998)


def build_message(row: OutboxMessage, contact: Contact) -> EmailMessage:
    context = _context(row, contact)
    rendered = render_template(f"email/{row.template}.{context['lang']}.txt", **context)
    subject_line, _, body = rendered.lstrip().partition("\n")
    subject = one_line(subject_line.removeprefix("Subject:"))
    message = EmailMessage(policy=MESSAGE_POLICY)
    message["Subject"] = subject
    message["From"] = current_app.config["MAIL_FROM"]
    message["To"] = formataddr((_display_name(contact.name), contact.email))
    message["Date"] = format_datetime(utcnow())
    message["Message-ID"] = row.message_id
    message["Content-Language"] = context["lang"]
    if row.is_marketing:
        # RFC 2369 and RFC 8058: mailbox providers show an unsubscribe button and
        # POST to the first URL; the mailto is a fallback for older clients.
        targets = [f"<{context['unsubscribe_url']}/one-click>"]
        mailto = current_app.config.get("MAIL_UNSUBSCRIBE_MAILTO")
        if mailto:
            targets.append(f"<mailto:{Address(addr_spec=mailto).addr_spec}?subject=unsubscribe>")
        message["List-Unsubscribe"] = ", ".join(targets)
        message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    else:
        message["Auto-Submitted"] = "auto-generated"
    message.set_content(body.strip() + "\n")
    html = render_template(
        "email/layout.html",
        lang=context["lang"],
        subject=subject,
        paragraphs=_html_paragraphs(body),
    )
    message.add_alternative(html, subtype="html")
    if row.template == "privacy_export":
        # GDPR art. 15 and 20: the copy, machine-readable, built at send time.
        from consent.rights import export_contact
        from crm.access import SYSTEM_ACTOR

        export = json.dumps(export_contact(SYSTEM_ACTOR, contact.id), indent=2, ensure_ascii=False)
        message.add_attachment(
            export.encode(), maintype="application", subtype="json", filename="your-data.json"
        )
    return message
