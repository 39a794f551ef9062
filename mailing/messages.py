"""Turning an outbox row into a MIME message: templates, signed links, headers.

Rendering happens right before sending, in the worker, from ids kept in the
row: no address and no rendered body wait in the queue, and a link is
signed at the moment it leaves.
"""

from __future__ import annotations

import email.policy
import functools
import hashlib
import json
import re
import secrets
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

import idna
from flask import current_app, render_template
from markupsafe import Markup, escape

from consent.models import ALL
from consent.subscriptions import get_request
from consent.tokens import LinkInvalid, Purpose, make_token
from consent.topics import current_policy
from crm.models import Contact
from extensions import db
from kernel.countries import normalise_language
from kernel.timestamps import utcnow
from mailing import mime
from mailing.models import Campaign, OutboxMessage
from mailing.transport import PreparedMessage
from mailing.why import Why

LANGUAGES = ("en", "sv")
# The GDPR art. 14 notice's own email (mailing.art14_notices), which delivery marks given.
SOURCE_NOTICE = "source_notice"


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


def unsubscribe_url(
    contact_id: int, topic: str, message_id: int | None = None, topics: list[str] | None = None
) -> str:
    """``topics``: every topic the link withdraws, when more than ``topic`` (the
    welcome email of a signup that confirmed several)."""
    payload: dict[str, Any] = {"c": contact_id, "t": topic}
    if message_id is not None:
        payload["m"] = message_id
    if topics and len(topics) > 1:
        payload["ts"] = list(topics)
    return _url("/unsubscribe/" + make_token(Purpose.UNSUBSCRIBE, payload))


def preferences_url(contact_id: int, message_id: int | None = None) -> str:
    """``message_id``: the outbox row of the marketing email the link is in, so
    that an unsubscribe or objection made there is attributed to its campaign."""
    payload: dict[str, Any] = {"c": contact_id}
    if message_id is not None:
        payload["m"] = message_id
    return _url("/preferences/" + make_token(Purpose.PREFERENCES, payload))


def undo_signup_url(contact_id: int, event_ids: list[int]) -> str:
    return _url("/undo/" + make_token(Purpose.UNDO_SIGNUP, {"c": contact_id, "e": event_ids}))


def brand_name() -> str:
    """Who the person deals with, as pages and notices name it (``BRAND_NAME``)."""
    return str(current_app.config.get("BRAND_NAME") or "")


def privacy_verify_url(request_id: int) -> str:
    return _url("/privacy/verify/" + make_token(Purpose.VERIFY_ADDRESS, {"p": request_id}))


@functools.lru_cache(maxsize=8)
def from_address(mail_from: str) -> Address:
    """``MAIL_FROM`` (``Name <address>``) as the one Address every message is from."""
    found = MESSAGE_POLICY.header_factory("From", mail_from).addresses
    if not found:
        raise RuntimeError(f"MAIL_FROM holds no address: {mail_from!r}")
    return found[0]


def sender_domain() -> str:
    return from_address(current_app.config["MAIL_FROM"]).domain or "localhost"


def message_id_for(idempotency_key: str) -> str:
    """Deterministic, so that a resend after a lost reply is recognisably the same mail."""
    digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]
    return f"<{digest}@{sender_domain()}>"


# Transactional mail that goes only to an address that has proved to be its
# owner's: the copy of their data follows the verification link mailed to it.
_SENT_TO_A_PROVED_ADDRESS = frozenset({"privacy_export"})


def shown_name(row: OutboxMessage, contact: Contact) -> str | None:
    """The contact's name where this message may show it (greeting and ``To``), else None.

    Anyone can post a signup form for any address, with any name, and then
    have the confirmation, an unsubscribe link, a privacy verification or a
    policy notice sent there: mail to an address that has not proved itself
    must carry nothing that person wrote. Marketing needs the policy's yes
    (a confirmed consent or a basis staff recorded), and the copy of a
    person's data goes out only after its link was used.
    """
    if row.is_marketing or row.template in _SENT_TO_A_PROVED_ADDRESS:
        return contact.name
    return None


def _context(row: OutboxMessage, contact: Contact, why: Why | None = None) -> dict[str, Any]:
    policy = current_policy()
    lang = page_language(row.language)
    params = row.params or {}
    context: dict[str, Any] = {
        "lang": lang,
        "name": shown_name(row, contact),
        "params": params,
        "brand": brand_name(),
    }
    if row.template == "confirm":
        request = get_request(int(params["request_id"]))
        context["topics"] = [policy.topic(t).label(lang) for t in request.topic_keys]
        context["confirm_url"] = confirm_url(request.id)
    if row.template == "repermission":
        # R24: the same signed confirmation link as a signup's double opt-in.
        request = get_request(int(params["request_id"]))
        context["topics"] = [policy.topic(t).label(lang) for t in params.get("topics", [])]
        context["confirm_url"] = confirm_url(request.id)
    if row.template == "unsubscribe_link":
        context["unsubscribe_url"] = unsubscribe_url(contact.id, ALL, row.id)
        context["preferences_url"] = preferences_url(contact.id)
    if row.template == "privacy_verify":
        context["verify_url"] = privacy_verify_url(int(params["request_id"]))
        context["is_erasure"] = params.get("kind") == "erasure"
    if row.template == "subscribed":
        # R8: a form's ticked box was taken as consent at once; the person hears
        # of it straight away and can undo it with one button.
        context["topics"] = [policy.topic(t).label(lang) for t in params.get("topics", [])]
        context["undo_url"] = undo_signup_url(contact.id, list(params.get("events", [])))
        context["preferences_url"] = preferences_url(contact.id)
    if row.template == SOURCE_NOTICE:
        # GDPR art. 21(4): the right to object is brought to their attention, with a way to use it.
        context["object_url"] = unsubscribe_url(contact.id, ALL, row.id)
    if row.template == "welcome":
        context["topics"] = [policy.topic(t).label(lang) for t in params.get("topics", [])]
    if row.template == "campaign":
        campaign = db.session.get(Campaign, row.campaign_id)
        if campaign is None:
            raise LinkInvalid("The campaign of this email is gone.")
        context["subject"] = campaign.subject_sv if lang == "sv" else campaign.subject_en
        context["body"] = campaign.body_sv if lang == "sv" else campaign.body_en
    if row.is_marketing:
        # The welcome email's link withdraws every topic its signup confirmed.
        signed_up = list(params.get("topics", [])) if row.template == "welcome" else None
        context["unsubscribe_url"] = unsubscribe_url(
            contact.id, row.topic or ALL, row.id, topics=signed_up
        )
        context["preferences_url"] = preferences_url(contact.id, row.id)
        context["topic_label"] = (
            ", ".join(policy.topic(t).label(lang) for t in signed_up)
            if signed_up
            else policy.topic(row.topic).label(lang)
            if row.topic
            else ""
        )
        # The footer says why this person gets this email (mailing.why).
        context["why"] = why
        # GDPR art. 14(3)(b): the first email to an address from an industry list
        # tells the person where we got it and on what basis.
        context["art14_notice"] = contact.art14_notice_owed_since is not None
        context["policy_url"] = _policy_url() if context["art14_notice"] else None
    return context


def _policy_url() -> str | None:
    """The address of the current published privacy policy, if it has one."""
    from consent.policies import current_policy_version

    policy = current_policy_version()
    return policy.url if policy is not None else None


_URL = re.compile(r"https?://[^\s<>\"]+")


def _own_links(context: dict[str, Any]) -> frozenset[str]:
    """The URLs the HTML part may turn into links: the signed links of this
    message and those in what staff wrote (a campaign, a policy's address).
    A contact's data reaches the templates only as their name, which is never
    one of them, so no text a form poster typed becomes a link."""
    texts = [value for key, value in context.items() if key.endswith("_url")]
    texts += [context.get("subject"), context.get("body"), *(context["params"] or {}).values()]
    return frozenset(
        match.group(0) for text in texts if isinstance(text, str) for match in _URL.finditer(text)
    )


def _html_paragraphs(text: str, links: frozenset[str]) -> list[Markup]:
    """The text as HTML paragraphs: escaped, with the URLs in ``links`` as links."""
    out = []
    for block in text.strip().split("\n\n"):
        pieces: list[str] = []
        done = 0
        for match in _URL.finditer(block):
            url = match.group(0)
            pieces.append(escape(block[done : match.start()]))
            linked = Markup('<a href="{0}">{0}</a>').format(url) if url in links else escape(url)
            pieces.append(linked)
            done = match.end()
        pieces.append(escape(block[done:]))
        out.append(Markup("".join(pieces).replace("\n", "<br>\n")))  # noqa: S704 - escaped above
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


def mailbox(address: str) -> str:
    """The stored address as it travels: a domain outside ASCII in its IDNA
    form (``xn--...``), which every server takes, so that only a local part
    outside ASCII needs SMTPUTF8."""
    local, _, domain = address.rpartition("@")
    if domain.isascii():
        return address
    try:
        return f"{local}@{idna.encode(domain).decode('ascii')}"
    except idna.IDNAError:
        return address


def recipient(name: str | None, address: str) -> Address:
    """The one mailbox in ``To``.

    Built as an Address, never as text to be parsed, and written by
    ``mime.fold_addresses``, which encodes a name holding anything but plain
    words as a whole: nothing in it (``<>``, ``"``, ``()``, commas, letters
    outside ASCII) can add or replace a recipient. The address is given in its
    parts, as stored: the address parser refuses a local part outside ASCII
    (RFC 6531, sent with SMTPUTF8).
    """
    local, _, domain = address.rpartition("@")
    return Address(display_name=_display_name(name), username=local, domain=domain)


# Kept under these names: the policy every message is built with, and the one it
# is written in on the wire (the same, CRLF line ends).
MESSAGE_POLICY = mime.MESSAGE_POLICY
WIRE_POLICY = mime.MESSAGE_POLICY


def read_message(data: bytes) -> EmailMessage:
    """A message as written to a file or received.

    Its headers may be UTF-8 (RFC 6532, for an address outside ASCII), which
    the bytes parser leaves as escapes that cannot be shown; the text parser
    reads them, but not a body part in 8bit. So the body comes from the one,
    each header holding such escapes from the other.
    """
    message: EmailMessage = email.message_from_bytes(data, policy=email.policy.default)  # type: ignore[assignment]
    escaped = [name for name, value in message.items() if not _is_clean(str(value))]
    if not escaped:
        return message
    try:
        headers = email.message_from_string(data.decode("utf-8"), policy=email.policy.default)
    except UnicodeDecodeError:
        return message
    for name in dict.fromkeys(escaped):
        message.replace_header(name, str(headers[name]))
    return message


def _is_clean(text: str) -> bool:
    """No byte the parser could not decode (kept as a lone surrogate)."""
    return not any("\udc80" <= char <= "\udcff" for char in text)


def build_message(row: OutboxMessage, contact: Contact, why: Why | None = None) -> EmailMessage:
    return _build(row, contact, _context(row, contact, why))


def _build(row: OutboxMessage, contact: Contact, context: dict[str, Any]) -> EmailMessage:
    rendered = render_template(f"email/{row.template}.{context['lang']}.txt", **context)
    subject_line, _, body = rendered.lstrip().partition("\n")
    subject = one_line(subject_line.removeprefix("Subject:"))
    message = EmailMessage(policy=MESSAGE_POLICY)
    message["Subject"] = subject
    message["From"] = from_address(current_app.config["MAIL_FROM"])
    message["To"] = recipient(context["name"], mailbox(contact.email))
    message["Date"] = format_datetime(utcnow())
    message["Message-ID"] = row.message_id
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
    text = body.strip() + "\n"
    message.set_content(text, cte=mime.transfer_encoding(text))
    html = render_template(
        "email/layout.html",
        lang=context["lang"],
        subject=subject,
        paragraphs=_html_paragraphs(body, _own_links(context)),
    )
    message.add_alternative(html, subtype="html", cte=mime.transfer_encoding(html))
    if row.template == "privacy_export":
        # GDPR art. 15 and 20: the copy, machine-readable, built at send time.
        from consent.rights import export_contact
        from kernel.access import SYSTEM_ACTOR

        export = json.dumps(export_contact(SYSTEM_ACTOR, contact.id), indent=2, ensure_ascii=False)
        message.add_attachment(
            export.encode(), maintype="application", subtype="json", filename="your-data.json"
        )
    # RFC 3282. Last: set_content() and the step to multipart drop or move every
    # Content-* header the message had before.
    message["Content-Language"] = context["lang"]
    return message


# Campaign mail: built once per campaign text, reused for every recipient ------------


class _StandIns:
    """Values that stand in for what differs between the recipients of one
    campaign text. Random per blank, so that no campaign text can contain them;
    letters and digits only, so that neither HTML escaping nor the link finder
    changes them. The date cannot be random words: it is replaced as the whole
    ``Date`` header line, the first one, which comes before any text."""

    date = "Thu, 01 Jan 1970 00:00:00 +0000"

    def __init__(self) -> None:
        word = "Standin" + secrets.token_hex(12)
        self.to = f"{word}@recipient.invalid"
        self.message_id = f"<{word}@message.invalid>"
        self.unsubscribe = f"{word}Unsubscribe"
        self.preferences = f"{word}Preferences"
        self.boundary = f"==============={word}=="
        self.detail = f"{word}Detail"

    def to_line(self) -> bytes:
        return b"To: " + self.to.encode() + b"\r\n"

    def slots(self) -> tuple[bytes, ...]:
        """The stand-ins replaced wherever they occur, in ``fill``'s order."""
        values = (self.message_id, self.unsubscribe, self.preferences, self.detail)
        return tuple(v.encode() for v in values)


def _date_line(date: str) -> bytes:
    return b"\r\nDate: " + date.encode() + b"\r\n"


@dataclass(frozen=True)
class _CampaignBlank:
    """A campaign message for one language and notice, built by ``build_message``
    with stand-ins and flattened once; ``fill`` puts in one recipient's values."""

    data: bytes
    stand_ins: _StandIns
    sender: str

    def fill(self, to_line: bytes, date: str, values: tuple[str, ...]) -> bytes:
        """``values``: the Message-ID, the two signed link tokens and the footer's detail."""
        data = self.data.replace(self.stand_ins.to_line(), to_line, 1)
        data = data.replace(_date_line(self.stand_ins.date), _date_line(date), 1)
        for slot, value in zip(self.stand_ins.slots(), values, strict=True):
            data = data.replace(slot, value.encode())
        return data


def prepare_message(
    row: OutboxMessage, contact: Contact, why: Why | None = None
) -> PreparedMessage | EmailMessage:
    """The message ``deliver`` sends for this row.

    A campaign's message is its wire bytes, filled in from a blank built once
    per campaign text, language and notice: byte for byte what
    ``build_message`` makes, at a fraction of the cost. Any other mail, and
    whatever a blank cannot hold (a line that would need another transfer
    encoding), is ``build_message``'s message.
    """
    context = _context(row, contact, why)
    address = mailbox(contact.email)
    # A blank holds ASCII wire bytes; an address outside ASCII needs the UTF-8
    # form that only the email package's own output gives.
    if row.template != "campaign" or not address.isascii():
        return _build(row, contact, context)
    config = current_app.config
    blank = _campaign_blank(
        context["lang"],
        context["subject"],
        context["body"],
        context["topic_label"],
        context["art14_notice"],
        context["policy_url"],
        why.kind if why is not None else None,
        why is not None and why.detail is not None,
        config["MAIL_FROM"],
        config["PUBLIC_BASE_URL"],
        config.get("MAIL_UNSUBSCRIBE_MAILTO"),
    )
    detail = why.detail if why is not None and why.detail is not None else ""
    values = (
        row.message_id or "",
        context["unsubscribe_url"].rpartition("/")[2],
        context["preferences_url"].rpartition("/")[2],
        detail,
    )
    if (
        blank is None
        or not all(v.isascii() and v.isprintable() for v in values)
        # The same in the text and the HTML part, and never a link: else built in full.
        or str(escape(detail)) != detail
        or _URL.search(detail)
    ):
        return _build(row, contact, context)
    data = blank.fill(to_line(context["name"], address), format_datetime(utcnow()), values)
    if max(map(len, data.split(b"\r\n"))) > mime.MAX_LINE:
        return _build(row, contact, context)
    return PreparedMessage(data=data, sender=blank.sender, recipient=address)


def to_line(name: str | None, address: str) -> bytes:
    """The ``To`` header line as ``build_message`` writes it on the wire."""
    return mime.fold_addresses("To", [recipient(name, address)]).encode()


@functools.lru_cache(maxsize=64)
def _campaign_blank(
    lang: str,
    subject: str,
    body: str,
    topic_label: str,
    art14_notice: bool,
    policy_url: str | None,
    why_kind: str | None,
    has_detail: bool,
    mail_from: str,
    base_url: str,
    mailto: str | None,
) -> _CampaignBlank | None:
    """The blank for one campaign text, or None when filling it in would not give
    what ``build_message`` gives:

    - a part in quoted-printable or base64 (a line over 998 characters) would
      wrap or encode differently for values of another length;
    - the blank is built twice, with two sets of stand-ins, and the first
      filled in with the second's values must equal the second (a stand-in
      folded or encoded away would not be replaced).
    """
    first, second = _StandIns(), _StandIns()
    texts = (lang, subject, body, topic_label, art14_notice, policy_url, why_kind, has_detail)
    message = _built(first, *texts)
    if any(
        part["Content-Transfer-Encoding"] not in ("7bit", "8bit")
        for part in message.walk()
        if not part.is_multipart()
    ):
        return None
    blank = _CampaignBlank(
        data=message.as_bytes(policy=WIRE_POLICY),
        stand_ins=first,
        sender=from_address(mail_from).addr_spec,
    )
    expected = (
        _built(second, *texts)
        .as_bytes(policy=WIRE_POLICY)
        .replace(second.boundary.encode(), first.boundary.encode())
    )
    filled = blank.fill(second.to_line(), second.date, tuple(v.decode() for v in second.slots()))
    return blank if filled == expected else None


def _built(
    stand_ins: _StandIns,
    lang: str,
    subject: str,
    body: str,
    topic_label: str,
    art14_notice: bool,
    policy_url: str | None,
    why_kind: str | None,
    has_detail: bool,
) -> EmailMessage:
    why = Why(why_kind, stand_ins.detail if has_detail else None) if why_kind else None
    context = {
        "lang": lang,
        "subject": subject,
        "body": body,
        "topic_label": topic_label,
        "art14_notice": art14_notice,
        "policy_url": policy_url,
        "why": why,
        "brand": brand_name(),
        "unsubscribe_url": _url("/unsubscribe/" + stand_ins.unsubscribe),
        "preferences_url": _url("/preferences/" + stand_ins.preferences),
        "name": None,
        "params": {},
    }
    row = OutboxMessage(template="campaign", kind="marketing", message_id=stand_ins.message_id)
    message = _build(row, Contact(email=stand_ins.to, name=None), context)
    message.replace_header("Date", stand_ins.date)
    message.set_boundary(stand_ins.boundary)
    return message
