"""The ``To`` header names the contact's own mailbox and nothing else, whatever
their name holds (issue 18, item 3).

A name that mixed a letter outside ASCII with ``<>``, ``"`` or ``()`` used to
change the recipient a mail client shows: ``Zoë <boss@evil.example>`` became
``To: =?utf-8?q?Zo=C3=AB?= <boss@evil.example> <zoe@example.com>``, which mail
clients and Python's email package read as boss@evil.example.
"""

from __future__ import annotations

import email
import email.policy
from email.headerregistry import Address
from email.message import EmailMessage

import sqlalchemy as sa
from hypothesis import example, given, settings
from hypothesis import strategies as st

from crm.models import Contact
from extensions import broker, db
from kernel.access import Actor
from mailing import campaigns, messages, transport
from mailing.campaigns import CampaignInput
from mailing.models import MailKind, OutboxMessage
from mailing.outbox import queue_email
from tests.mailing.conftest import link
from tests.mailing.helpers import consented_contacts, signup

STAFF = Actor(kind="user", name="marketer@example.com", role="marketing")
TEXTS = CampaignInput(
    topic="newsletter",
    subject_sv="Nyheter",
    body_sv="Hej! Här är nyheterna.",
    subject_en="News",
    body_en="Hello! Here is the news.",
)

# What a name may hold: the characters that mean something in an address
# header, line breaks, letters outside ASCII (which need RFC 2047) and any
# other character.
_SPECIALS = [*"<>\"()[],;:@\\.=?'\r\n\t ", "=?", "?=", "=?utf-8?q?", "ë", "Å", "中", "😀"]
NAMES = (
    st.lists(
        st.one_of(
            st.sampled_from(_SPECIALS),
            st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=8),
            st.sampled_from(["boss@evil.example", "<boss@evil.example>", "Zoë", "Smith, J"]),
        ),
        max_size=25,
    )
    .map("".join)
    .map(lambda name: name[:200])
)  # the column holds 200 characters
ADDRESSES = [
    "zoe@example.com",
    "first.last+tag@sub.example.se",
    "anna@företag.se",
    "jörgen@firma.se",
]
HOSTILE = [
    "Zoë <boss@evil.example>",
    'Zoë" <boss@evil.example>',
    "Zoë, boss@evil.example",
    "Zoë (x) <boss@evil.example>, other@evil.example",
    'Björn "<boss@evil.example>"\r\nCc: cc@evil.example',
]


def _parsed(data: bytes, address: str) -> EmailMessage:
    """The message as a mail client reads it."""
    if address.isascii():
        return email.message_from_bytes(data, policy=email.policy.default)  # type: ignore[return-value]
    # An address outside ASCII travels with SMTPUTF8, its headers in UTF-8.
    return email.message_from_string(data.decode("utf-8"), policy=email.policy.default)  # type: ignore[return-value]


def _wire(message: EmailMessage | transport.PreparedMessage) -> bytes:
    if isinstance(message, transport.PreparedMessage):
        return message.data
    utf8 = not all(a.addr_spec.isascii() for a in message["To"].addresses)
    return message.as_bytes(policy=messages.WIRE_POLICY.clone(utf8=utf8))


def _letters(text: str) -> str:
    """The text without its white space: RFC 2047 has a reader drop the folding
    between two encoded words, which Python's parser keeps as a space."""
    return "".join(text.split())


def _only_recipient(data: bytes, address: str) -> Address:
    [to] = _parsed(data, address)["To"].addresses
    assert to.addr_spec == messages.mailbox(address)
    return to


def test_the_to_header_holds_exactly_the_contact_whatever_the_name(app) -> None:
    """Every kind of message with the contact's name in ``To``: the welcome and a
    campaign built in full, and a campaign filled in from its blank, which must
    stay byte for byte the full build."""
    [contact_id] = consented_contacts(app, [("zoe@example.com", None, "sv")])
    with app.app_context():
        campaign = campaigns.create_campaign(STAFF, TEXTS)
        campaigns.send_campaign(STAFF, campaign.id)
        broker.flush_all()  # no worker: the rows are built here
        contact = db.session.get(Contact, contact_id)
        welcome = queue_email(
            contact,
            kind=MailKind.MARKETING,
            template="welcome",
            topic="newsletter",
            idempotency_key="welcome:test",
            params={"topics": ["newsletter"]},
        )
        db.session.commit()
        [campaign_row] = db.session.scalars(
            sa.select(OutboxMessage).where(OutboxMessage.campaign_id == campaign.id)
        )

        @settings(max_examples=300, deadline=None)
        @given(name=NAMES, address=st.sampled_from(ADDRESSES))
        @example(name="Zoë <boss@evil.example>", address=ADDRESSES[0])
        @example(name='Zoë "x" (y), z <boss@evil.example>', address=ADDRESSES[0])
        @example(name="Zoë <boss@evil.example>", address=ADDRESSES[2])
        @example(name="Zoë <boss@evil.example>", address=ADDRESSES[3])
        def check(name: str, address: str) -> None:
            with db.session.no_autoflush:
                contact.name, contact.email = name, address
                shown = _letters(messages.one_line(name))
                for row in (welcome, campaign_row):
                    built = messages.build_message(row, contact)
                    to = _only_recipient(_wire(built), address)
                    # The name stays the name, unless it is dropped as a whole.
                    assert _letters(to.display_name) in (shown, "")
                prepared = messages.prepare_message(campaign_row, contact)
                if isinstance(prepared, transport.PreparedMessage):
                    _only_recipient(prepared.data, address)
                    assert prepared.recipient == messages.mailbox(address)

        try:
            check()
        finally:
            db.session.rollback()
            db.session.remove()


@given(name=NAMES)
@settings(max_examples=300, deadline=None)
@example(name="Zoë <boss@evil.example>")
def test_the_to_line_of_a_blank_is_the_header_machinery_s(name: str) -> None:
    """``to_line`` (the campaign blank's fast path) writes what the header
    machinery writes for the one Address, and a client reads one recipient."""
    address = "zoe@example.com"
    line = messages.to_line(name, address)
    shown = messages._display_name(name)
    header = messages.WIRE_POLICY.header_factory(
        "To", Address(display_name=shown, addr_spec=address)
    )
    assert line == messages.WIRE_POLICY.fold_binary("To", header)
    parsed = email.message_from_bytes(line + b"\r\n", policy=email.policy.default)
    assert [a.addr_spec for a in parsed["To"].addresses] == [address]


def test_hostile_names_reach_and_show_only_their_own_mailbox(
    app, client, smtp, mail_worker
) -> None:
    """Through the real flow: signed up with such a name, confirmed; the welcome
    and a campaign, as the SMTP server received them, name one recipient."""
    addresses = [f"person{n}@example.com" for n in range(len(HOSTILE))]
    for address, name in zip(addresses, HOSTILE, strict=True):
        assert signup(client, address, name=name).status_code == 200
    mail_worker.drain()
    for confirmation in smtp.wait_for(len(HOSTILE)):
        assert client.post(link(confirmation, "/confirm/")).status_code == 200
    mail_worker.drain()
    with app.app_context():
        campaign = campaigns.create_campaign(STAFF, TEXTS)
        campaigns.send_campaign(STAFF, campaign.id)
        db.session.remove()
    mail_worker.drain()

    received = smtp.wait_for(3 * len(HOSTILE))
    assert sorted(smtp.recipients) == sorted(addresses * 3)
    for message, raw, recipient in zip(received, smtp.raw, smtp.recipients, strict=True):
        head = raw.split(b"\r\n\r\n")[0]
        [to] = message["To"].addresses
        assert to.addr_spec == recipient, head
        assert message.get_all("Cc") is None and message.get_all("Bcc") is None, head
