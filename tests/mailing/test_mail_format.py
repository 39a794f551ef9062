"""Every kind of message the service sends is well-formed on the wire (issue 18,
item 6): RFC 5322 line lengths, RFC 2047 encoded words, RFC 2045
quoted-printable lines, ``Content-Language`` (RFC 3282), and 8-bit bodies
declared with ``BODY=8BITMIME`` (RFC 6152) to a server that offers it, or sent
in 7 bits to one that does not.

The messages are the ones an SMTP server (aiosmtpd in this process) received
from the real flows: every template under templates/email in both languages,
with a long Swedish name, long Swedish subjects and campaign bodies whose lines
are long enough for each transfer encoding.
"""

from __future__ import annotations

import email
import email.policy
import re
from collections import defaultdict
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from crm.models import Contact
from extensions import db
from kernel.access import Actor
from kernel.timestamps import utcnow
from mailing import campaigns
from mailing.art14_notices import queue_art14_notices
from mailing.campaigns import CampaignInput
from mailing.models import MailKind
from mailing.outbox import hand_over, queue_email
from tests.mailing.conftest import SmtpSink, link, serve, text_of
from tests.mailing.helpers import consented_contacts, eleven_minutes_pass, outbox, signup

STAFF = Actor(kind="user", name="marketer@example.com", role="marketing")
TEMPLATES = Path(__file__).resolve().parents[2] / "templates" / "email"
# Included by the others, never sent on their own.
PARTIALS = {"footer", "art14_notice"}
KINDS = {path.name.split(".")[0] for path in TEMPLATES.glob("*.txt")} - PARTIALS

LONG_NAME = (
    "Åsa-Britt Öhman-Källström af Ödeshög, Ärkebiskopsgårdens Förvaltningsaktiebolag "
    "(Sjöräddningssällskapets Östgötaavdelning) Ågrenska Välfärdsföräldraföreningen"
)
LONG_SUBJECT = (
    "Höstens nyheter för små och medelstora företag i Östergötland, Västergötland och "
    "Ångermanland: räntor, moms och förändringar i årsredovisningslagen för räkenskapsåret"
)
WORD = "Arbetsmiljöverkets" * 5  # one word of 90 characters, which no fold can break
LONG_LINE = "Vi skickar månadens sammanfattning om räntor, moms och årsredovisningar. " * 8
OVER_998 = "Ett ord till, på svenska med åäö. " * 40  # 1,360 characters on one line


def _campaign_texts(body_line: str) -> CampaignInput:
    return CampaignInput(
        topic="newsletter",
        subject_sv=LONG_SUBJECT,
        body_sv=f"Hej!\n\n{body_line}\n\nLäs mer på https://example.se/nyheter?a=1&b=2 i dag.",
        subject_en=f"Autumn news for small and medium-sized companies — “{WORD}” & <more>",
        body_en=f"Hello!\n\n{body_line}\n\nRead more at https://example.com/news?a=1&b=2.",
    )


def _send_every_kind(
    app: Any, client: Any, admin_api: Any, mail_worker: Any, sink: SmtpSink
) -> None:
    """Every message the service can send, through its own flows, in both languages."""
    for lang in ("en", "sv"):
        # A ticked box from a single opt-in country: the notice with its undo link.
        single = f"single-{lang}@example.se"
        answer = signup(client, single, "events", name=LONG_NAME, language=lang, country="SE")
        assert answer.status_code == 200
        address = f"signup-{lang}@example.se"
        assert signup(client, address, name=LONG_NAME, language=lang).status_code == 200
        mail_worker.drain()
        [confirmation] = [m for m in sink.to(address) if "/confirm/" in text_of(m)]
        assert client.post(link(confirmation, "/confirm/")).status_code == 200  # welcome
        mail_worker.drain()
        eleven_minutes_pass(app)  # one email a form can cause per mailbox per ten minutes
        assert client.post("/unsubscribe", data={"email": address}).status_code == 200
        mail_worker.drain()
        eleven_minutes_pass(app)
        answer = client.post("/privacy/requests", data={"email": address, "kind": "access"})
        assert answer.status_code == 200
        mail_worker.drain()
        [verification] = [m for m in sink.to(address) if "/privacy/verify/" in text_of(m)]
        assert client.post(link(verification, "/privacy/verify/")).status_code == 200  # export
    # Campaign mail with and without the GDPR art. 14 notice; lines of every length.
    listed = consented_contacts(
        app, [(f"list-{lang}@example.se", LONG_NAME, lang) for lang in ("en", "sv")]
    )
    with app.app_context():
        ids = []
        for contact_id, lang in zip(listed, ("en", "sv"), strict=True):
            contact = db.session.get(Contact, contact_id)
            contact.art14_notice_owed_since = utcnow()
            # The bulletin template: marketing with its text in the row.
            row = queue_email(
                contact,
                kind=MailKind.MARKETING,
                template="bulletin",
                topic="newsletter",
                idempotency_key=f"bulletin:{lang}",
                params={"subject": f"{LONG_SUBJECT} {WORD}", "body": f"{LONG_LINE}\n\n{OVER_998}"},
            )
            ids.append(row.id)
        db.session.commit()
        hand_over(ids)
        for body_line in (LONG_LINE, OVER_998):
            campaign = campaigns.create_campaign(STAFF, _campaign_texts(body_line))
            campaigns.send_campaign(STAFF, campaign.id)
        db.session.remove()
    published = admin_api.post(
        "/api/v1/policies",
        json={"version": "2.0", "major": True, "url": "https://example.com/privacy/2.0"},
    )
    assert published.status_code == 201, published.json
    # R24: consents given before the major version are asked to confirm under it.
    with app.app_context():
        from mailing.repermission import send_repermission

        assert send_repermission(STAFF) >= 2
    # The GDPR art. 14 notice on its own, to an industry-list contact in each language.
    source = {"type": "legitimate_interest", "kind": "industry_list", "source": "Lista <2026> & co"}
    for lang in ("en", "sv"):
        created = admin_api.post(
            "/api/v1/contacts",
            json={"email": f"notice-{lang}@example.se", "name": LONG_NAME, "language": lang,
                  "country": "SE", "basis": source},
        )  # fmt: skip
        assert created.status_code == 201, created.json
    with app.app_context():
        assert queue_art14_notices() == 2
        db.session.remove()
    mail_worker.drain()


@pytest.fixture
def every_kind_sent(app: Any, client: Any, admin_api: Any, smtp: SmtpSink, mail_worker: Any):  # type: ignore[no-untyped-def]
    app.config["MAIL_UNSUBSCRIBE_MAILTO"] = "unsubscribe@example.com"
    try:
        _send_every_kind(app, client, admin_api, mail_worker, smtp)
    finally:
        app.config["MAIL_UNSUBSCRIBE_MAILTO"] = None
    return smtp


def _header_blocks(raw: bytes, boundaries: set[bytes]) -> list[list[bytes]]:
    """The header lines of the message and of each of its MIME parts."""
    blocks: list[list[bytes]] = [[]]
    in_header = True
    for line in raw.split(b"\r\n"):
        if in_header and line == b"":
            in_header = False
        elif in_header:
            blocks[-1].append(line)
        elif line[:2] == b"--" and line[2:] in boundaries:  # a part begins with its headers
            blocks.append([])
            in_header = True
    return blocks


# One word that cannot be folded, a URL in List-Unsubscribe (RFC 2369): a line of
# its own, up to RFC 5322's 998 characters, never an encoded word.
_URL_LINE = re.compile(rb"(List-Unsubscribe:)? <[^\s<>]+>,?")
_ENCODED_WORD = re.compile(rb"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=")


def _problems(raw: bytes, mail_options: list[str], language: str) -> dict[str, list[str]]:
    """What is wrong with one message as received, by rule."""
    found: dict[str, list[str]] = defaultdict(list)
    try:
        strict = email.message_from_bytes(raw, policy=email.policy.strict)
    except Exception as exc:
        found["strict parse"].append(f"{type(exc).__name__}: {exc}")
        return found
    message: EmailMessage = email.message_from_bytes(raw, policy=email.policy.default)  # type: ignore[assignment]
    for part in [*strict.walk(), *message.walk()]:
        found["defects"] += [repr(d) for d in part.defects]
        for name, value in part.items():
            found["defects"] += [f"{name}: {d!r}" for d in getattr(value, "defects", ())]
    boundaries = {p.get_boundary().encode() for p in message.walk() if p.is_multipart()}
    for block in _header_blocks(raw, boundaries):
        for index, line in enumerate(block):
            header = next(h for h in reversed(block[: index + 1]) if not h[:1].isspace())
            unbreakable = header.startswith(b"List-Unsubscribe:") and _URL_LINE.fullmatch(line)
            if len(line) > 78 and not unbreakable:
                found["header line over 78"].append(line.decode(errors="replace"))
            if len(line) > 998:
                found["header line over 998"].append(line.decode(errors="replace"))
            for word in _ENCODED_WORD.findall(line):
                if len(word) > 75:
                    found["encoded word over 75"].append(f"{len(word)}: {word.decode()}")
    for part in message.walk():
        if part.get("Content-Transfer-Encoding", "").lower() == "quoted-printable":
            payload = part.get_payload()
            assert isinstance(payload, str)
            found["quoted-printable line over 76"] += [
                f"{len(line)}: {line[:40]}..." for line in payload.splitlines() if len(line) > 76
            ]
    if message["Content-Language"] != language:
        found["Content-Language"].append(repr(message["Content-Language"]))
    if any(byte > 127 for byte in raw) and "BODY=8BITMIME" not in mail_options:
        found["8-bit body without BODY=8BITMIME"].append(repr(mail_options))
    return {rule: lines for rule, lines in found.items() if lines}


def _languages(app: Any) -> dict[str, tuple[str, str]]:
    """Message-ID: (template, language), from the outbox."""
    return {row.message_id: (row.template, row.language) for row in outbox(app)}


def test_every_kind_of_message_is_well_formed_on_the_wire(app, every_kind_sent) -> None:
    sink = every_kind_sent
    by_id = _languages(app)
    sent = {by_id[m["Message-ID"]] for m in sink.messages}
    assert sent >= {(kind, lang) for kind in KINDS for lang in ("en", "sv")}

    problems = {}
    for message, raw, options in zip(sink.messages, sink.raw, sink.mail_options, strict=True):
        template, language = by_id[message["Message-ID"]]
        found = _problems(raw, options, language)
        if found:
            problems[f"{template}.{language} {message['Message-ID']}"] = found
    assert problems == {}

    # The rules were put to the test: folded and encoded headers, quoted-printable
    # bodies, 8-bit bodies and List-Unsubscribe with two URLs all occurred.
    heads = [raw.split(b"\r\n\r\n")[0] for raw in sink.raw]
    assert any(_ENCODED_WORD.search(head) for head in heads)
    assert any(re.search(rb"(^|\r\n)Subject:[^\r]*\r\n ", head) for head in heads)
    assert any(b"quoted-printable" in raw for raw in sink.raw)
    assert any(any(byte > 127 for byte in raw) for raw in sink.raw)
    assert any(b"<mailto:unsubscribe@example.com" in head for head in heads)


@pytest.fixture
def seven_bit_smtp(app: Any) -> Iterator[SmtpSink]:
    """A server whose EHLO does not offer 8BITMIME."""
    yield from serve(app, SmtpSink(eight_bit_mime=False))


def test_a_server_without_8bitmime_gets_the_same_messages_in_7_bits(
    app, client, admin_api, seven_bit_smtp, mail_worker
) -> None:
    _send_every_kind(app, client, admin_api, mail_worker, seven_bit_smtp)
    by_id = _languages(app)
    assert {by_id[m["Message-ID"]][0] for m in seven_bit_smtp.messages} >= KINDS
    for message, raw, options in zip(
        seven_bit_smtp.messages, seven_bit_smtp.raw, seven_bit_smtp.mail_options, strict=True
    ):
        assert all(byte < 128 for byte in raw), message["Subject"]
        assert "BODY=8BITMIME" not in options
        template, language = by_id[message["Message-ID"]]
        assert _problems(raw, options, language) == {}, template
    # Still Swedish: the letters were encoded, not lost.
    swedish = [m for m in seven_bit_smtp.messages if by_id[m["Message-ID"]] == ("campaign", "sv")]
    assert swedish and all("Läs mer på" in text_of(m) for m in swedish)
