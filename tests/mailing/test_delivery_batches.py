"""Delivery in batches (``mailing.delivery.deliver_many``) and campaign messages
filled in from a blank (``mailing.messages.prepare_message``), against a real
SMTP server (aiosmtpd in this process) and the test database."""

from __future__ import annotations

import email
import email.policy
from collections import Counter
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import getaddresses
from typing import Any

import dramatiq
import pytest
import sqlalchemy as sa

from consent.services import record_objection
from crm.models import Contact
from crm.services import remove_contact
from extensions import broker, db
from mailing import campaigns, delivery, messages, outbox, transport
from mailing.campaigns import CampaignInput
from mailing.models import OutboxMessage
from tests.mailing.helpers import deliver_with_a_change_before_the_hold
from tests.mailing.test_campaigns import SALES, STAFF, TEXTS, _consented_contacts

MOMENT = datetime(2026, 11, 23, 9, 30, 15, tzinfo=UTC)


def _queued_campaign(app: Any, texts: CampaignInput = TEXTS) -> list[int]:
    """Send a campaign with no worker running: its rows wait in the outbox."""
    with app.app_context():
        campaign = campaigns.create_campaign(STAFF, texts)
        campaigns.send_campaign(STAFF, campaign.id)
        ids = list(
            db.session.scalars(
                sa.select(OutboxMessage.id)
                .where(OutboxMessage.campaign_id == campaign.id)
                .order_by(OutboxMessage.contact_id)
            )
        )
        db.session.remove()
    broker.flush_all()  # the jobs the send handed over; the tests deliver themselves
    return ids


def _statuses(app: Any, ids: list[int]) -> list[tuple[str, str | None]]:
    with app.app_context():
        rows = db.session.execute(
            sa.select(OutboxMessage.id, OutboxMessage.status, OutboxMessage.block_reason).where(
                OutboxMessage.id.in_(ids)
            )
        ).all()
        db.session.remove()
    found = {row.id: (row.status, row.block_reason) for row in rows}
    return [found.get(i, ("gone", None)) for i in ids]


def _deliver_many(app: Any, ids: list[int]) -> dict[int, delivery.Delivery]:
    with app.app_context():
        try:
            return delivery.deliver_many(ids)
        finally:
            db.session.remove()


# The blank: byte for byte what build_message makes ------------------------------------


@pytest.fixture
def one_moment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Signed links and the Date header from one moment, so that two builds of a
    message can be compared byte for byte."""
    from itsdangerous import TimestampSigner

    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: int(MOMENT.timestamp()))
    monkeypatch.setattr(messages, "utcnow", lambda: MOMENT)


NAMES = [
    None,
    "Anna Berg",
    "Åsa Öberg-Ståhl",
    'Smith, "J" Jr.',
    "=?utf-8?q?Evil?=",
    "Björn\r\nBcc: victim@example.com",
    "Name " * 30,
]
LONG_LINE = "Ett ord till. " * 100  # 1,400 characters on one line


@pytest.mark.parametrize(
    "texts, mailto",
    [
        (TEXTS, None),
        (TEXTS, "unsubscribe@example.com"),
        (
            CampaignInput(
                topic="newsletter",
                subject_sv="Höstens nyheter: åäö & <mer>",
                body_sv="Hej!\n\nLäs mer på https://example.se/nyheter?a=1&b=2 i dag.\n\n"
                + "Mer text. " * 60,
                subject_en="Autumn news — “quoted” & <more>",
                body_en="Hello!\n\nRead more at https://example.com/news?a=1&b=2 today.",
            ),
            None,
        ),
        (
            # Text that looks like the blank's stand-ins and headers stays text.
            CampaignInput(
                topic="newsletter",
                subject_sv="Thu, 01 Jan 1970 00:00:00 +0000",
                body_sv="Date: Thu, 01 Jan 1970 00:00:00 +0000\n\nTo: Standin@recipient.invalid",
                subject_en="Date: Thu, 01 Jan 1970 00:00:00 +0000",
                body_en="Thu, 01 Jan 1970 00:00:00 +0000\nDate: Thu, 01 Jan 1970 00:00:00 +0000",
            ),
            None,
        ),
    ],
)
def test_a_campaign_message_from_the_blank_equals_the_one_built_for_its_recipient(
    app, one_moment, texts, mailto
) -> None:
    ids = _consented_contacts(app, len(NAMES), start=100)
    with app.app_context():
        for contact_id, name in zip(ids, NAMES, strict=True):
            db.session.get(Contact, contact_id).name = name
        # GDPR art. 14 notice owed: the blank with the notice in it.
        db.session.get(Contact, ids[1]).art14_notice_owed_since = MOMENT
        db.session.commit()
        db.session.remove()
    outbox_ids = _queued_campaign(app, texts)
    app.config["MAIL_UNSUBSCRIBE_MAILTO"] = mailto
    try:
        with app.app_context():
            rows = db.session.execute(
                sa.select(OutboxMessage, Contact)
                .join(Contact, Contact.id == OutboxMessage.contact_id)
                .where(OutboxMessage.id.in_(outbox_ids))
            ).all()
            for row, contact in rows:
                prepared = messages.prepare_message(row, contact)
                assert isinstance(prepared, transport.PreparedMessage), contact.name
                built = messages.build_message(row, contact)
                # The one difference allowed: the MIME boundary, random per message.
                sent = email.message_from_bytes(prepared.data, policy=email.policy.default)
                built.set_boundary(sent.get_boundary())
                assert prepared.data == built.as_bytes(policy=messages.WIRE_POLICY), contact.name
                assert prepared.recipient == contact.email
                assert prepared.sender == getaddresses([app.config["MAIL_FROM"]])[0][1]
            db.session.remove()
    finally:
        app.config["MAIL_UNSUBSCRIBE_MAILTO"] = None


@pytest.mark.parametrize(
    "name",
    [None, "", "Anna", "Anna Berg", "Anna  Berg ", "Åsa Öberg", 'A "B"', "Berg, Anna", "O'Brien",
     "Dr. No", "A" * 1000, "=?utf-8?q?x?=", "Anna\r\nBcc: x@example.com", "Anna 2"],
)  # fmt: skip
@pytest.mark.parametrize(
    "address",
    ["a@b.se", "first.last+tag@sub.example.com", "a..b@x.se", "o'brien@x.se", "a@localhost"],
)
def test_the_to_line_is_the_one_the_header_machinery_writes(name, address) -> None:
    header = messages.WIRE_POLICY.header_factory("To", messages.recipient(name, address))
    assert messages.to_line(name, address) == messages.WIRE_POLICY.fold_binary("To", header)


def test_a_line_a_blank_cannot_hold_is_built_in_full(app, one_moment) -> None:
    """A line over RFC 5322's 998 characters needs another transfer encoding,
    whose wrapping depends on the recipient's values: build_message's message."""
    _consented_contacts(app, 1, start=200)
    long_texts = CampaignInput(
        topic="newsletter",
        subject_sv="Lång rad",
        body_sv=LONG_LINE,
        subject_en="Long line",
        body_en=LONG_LINE,
    )
    [outbox_id] = _queued_campaign(app, long_texts)
    with app.app_context():
        row = db.session.get(OutboxMessage, outbox_id)
        message = messages.prepare_message(row, db.session.get(Contact, row.contact_id))
        assert isinstance(message, EmailMessage)
        body = message.get_body(("plain",))
        assert body["Content-Transfer-Encoding"] in ("quoted-printable", "base64")
        assert LONG_LINE.strip() in body.get_content()
        db.session.remove()


# One batch, each row's own outcome ---------------------------------------------------------


def test_each_row_of_a_batch_gets_its_own_outcome(app, smtp) -> None:
    ids = _consented_contacts(app, 6, start=300)
    outbox_ids = _queued_campaign(app)
    addresses = [f"person{n}@example.se" for n in range(300, 306)]
    with app.app_context():
        record_objection(SALES, ids[1], received_via="phone")
        remove_contact(ids[2])
        db.session.commit()
        db.session.remove()
    smtp.refuse.add(addresses[3])
    assert _deliver_many(app, [outbox_ids[4]]) == {outbox_ids[4]: delivery.Delivery("sent")}

    unknown = 10**9
    outcomes = _deliver_many(app, [*outbox_ids, unknown])

    assert outcomes == {
        outbox_ids[0]: delivery.Delivery("sent"),
        outbox_ids[1]: delivery.Delivery("blocked", "objection"),
        # Erased before the job ran: its mail went with it.
        outbox_ids[2]: delivery.Delivery("skipped", "not_in_outbox"),
        outbox_ids[3]: delivery.Delivery("failed", outcomes[outbox_ids[3]].reason),
        outbox_ids[4]: delivery.Delivery("skipped", "already_sent"),
        outbox_ids[5]: delivery.Delivery("sent"),
        unknown: delivery.Delivery("skipped", "not_in_outbox"),
    }
    assert "550" in (outcomes[outbox_ids[3]].reason or "")
    assert _statuses(app, outbox_ids) == [
        ("sent", None),
        ("blocked", "objection"),
        ("gone", None),
        ("failed", None),
        ("sent", None),
        ("sent", None),
    ]
    received = Counter(str(m["To"]) for m in smtp.messages)
    assert received == Counter({addresses[0]: 1, addresses[4]: 1, addresses[5]: 1})


def test_a_temporary_failure_puts_that_row_and_the_rest_back(app, smtp) -> None:
    _consented_contacts(app, 5, start=400)
    # In the order a batch sends them: by outbox id.
    outbox_ids = sorted(_queued_campaign(app))
    with app.app_context():
        address_of = dict(
            db.session.execute(
                sa.select(OutboxMessage.id, Contact.email)
                .join(Contact, Contact.id == OutboxMessage.contact_id)
                .where(OutboxMessage.id.in_(outbox_ids))
            ).all()
        )
        db.session.remove()
    addresses = [address_of[i] for i in outbox_ids]
    smtp.defer.add(addresses[2])

    with pytest.raises(transport.TemporaryFailure, match="451"):
        _deliver_many(app, outbox_ids)

    assert [s for s, _ in _statuses(app, outbox_ids)] == [
        "sent",
        "sent",
        "queued",
        "queued",
        "queued",
    ]
    with app.app_context():
        rows = db.session.scalars(
            sa.select(OutboxMessage)
            .where(OutboxMessage.id.in_(outbox_ids))
            .order_by(OutboxMessage.id)
        ).all()
        assert [r.claimed_at is None for r in rows] == [False, False, True, True, True]
        assert "451" in (rows[2].last_error or "")
        db.session.remove()

    smtp.defer.clear()
    outcomes = _deliver_many(app, outbox_ids)
    assert [outcomes[i].status for i in outbox_ids] == [
        "skipped",
        "skipped",
        "sent",
        "sent",
        "sent",
    ]
    assert Counter(str(m["To"]) for m in smtp.messages) == Counter(addresses)


def test_a_batch_costs_the_same_statements_for_five_rows_as_for_twenty_five(app, smtp) -> None:
    """The point of a batch: claim, read, hold, check and marks are one statement
    each for all its rows. A statement per row would make 25 rows cost more."""
    _consented_contacts(app, 30, start=500)
    outbox_ids = _queued_campaign(app)

    def statements(ids: list[int]) -> int:
        seen: list[str] = []
        with app.app_context():
            engine = db.engine

            def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
                seen.append(statement)

            sa.event.listen(engine, "before_cursor_execute", count)
            try:
                outcomes = delivery.deliver_many(ids)
            finally:
                sa.event.remove(engine, "before_cursor_execute", count)
                db.session.remove()
        assert {o.status for o in outcomes.values()} == {"sent"}
        return len([s for s in seen if not s.lstrip().upper().startswith(("SAVEPOINT", "RELEASE"))])

    assert statements(outbox_ids[:5]) == statements(outbox_ids[5:30])
    assert len(smtp.messages) == 30


def test_a_contact_changed_before_the_hold_gets_the_message_built_again(app, smtp) -> None:
    """The message is built before the contacts are held; a new address or name
    committed in between must not be sent the old one."""
    [contact_id] = _consented_contacts(app, 1, start=600)
    [outbox_id] = _queued_campaign(app)

    def rename() -> None:
        with app.app_context():
            contact = db.session.get(Contact, contact_id)
            contact.email, contact.name = "moved600@example.se", "Åsa Moved"
            db.session.commit()
            db.session.remove()

    outcome, changed = deliver_with_a_change_before_the_hold(app, outbox_id, rename)
    assert changed
    assert outcome == delivery.Delivery("sent")
    [message] = smtp.wait_for(1)
    assert message["To"].addresses[0].addr_spec == "moved600@example.se"
    assert message["To"].addresses[0].display_name == "Åsa Moved"


def test_a_campaign_is_handed_over_in_jobs_of_a_batch_each(app) -> None:
    _consented_contacts(app, 2 * outbox.DELIVERY_BATCH + 3, start=700)
    with app.app_context():
        campaign = campaigns.create_campaign(STAFF, TEXTS)
        campaigns.send_campaign(STAFF, campaign.id)
        db.session.remove()
    queued = broker.queues["mail"]
    jobs = []
    while not queued.empty():
        jobs.append(dramatiq.Message.decode(queued.get_nowait()))
        queued.task_done()  # or a later broker.join would wait for it
    assert [(job.actor_name, len(job.args[0])) for job in jobs] == [
        ("deliver_emails", outbox.DELIVERY_BATCH),
        ("deliver_emails", outbox.DELIVERY_BATCH),
        ("deliver_emails", 3),
    ]


def test_a_message_that_cannot_be_built_for_an_objector_is_blocked_not_failed(
    app, smtp, monkeypatch
) -> None:
    """Rendering comes before the hold, but the policy's answer comes first in
    the outcome: the report counts an objector as blocked whatever the template did."""
    objector, other = _consented_contacts(app, 2, start=800)
    outbox_ids = _queued_campaign(app)
    with app.app_context():
        record_objection(SALES, objector, received_via="phone")
        db.session.remove()

    def broken(row: Any, contact: Any, why: Any = None) -> Any:
        raise RuntimeError("template bug")

    monkeypatch.setattr(messages, "prepare_message", broken)
    with pytest.raises(RuntimeError, match="template bug"):
        _deliver_many(app, outbox_ids)
    with app.app_context():
        rows = {
            r.contact_id: r
            for r in db.session.scalars(
                sa.select(OutboxMessage).where(OutboxMessage.id.in_(outbox_ids))
            )
        }
        db.session.remove()
    assert (rows[objector].status, rows[objector].block_reason) == ("blocked", "objection")
    assert rows[other].status == "failed"
    assert "rendering failed: RuntimeError: template bug" in (rows[other].last_error or "")
    assert smtp.messages == []


def test_an_error_in_the_middle_of_a_batch_marks_what_left_and_puts_back_the_rest(
    app, smtp, monkeypatch
) -> None:
    _consented_contacts(app, 4, start=900)
    outbox_ids = sorted(_queued_campaign(app))
    real_send = transport.send
    calls: list[int] = []

    def send_then_crash(message: Any, file_name: str, envelope_sender: str | None = None) -> str:
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("a bug in the transport")
        return real_send(message, file_name)

    monkeypatch.setattr(transport, "send", send_then_crash)
    with pytest.raises(RuntimeError, match="a bug in the transport"):
        _deliver_many(app, outbox_ids)
    assert [s for s, _ in _statuses(app, outbox_ids)] == ["sent", "sent", "queued", "queued"]
    assert len(smtp.wait_for(2)) == 2


def test_a_batch_whose_hold_time_is_up_hands_the_rest_over_again(app, smtp, monkeypatch) -> None:
    """A slow SMTP server must not keep contacts (on SQLite: every writer) waiting:
    after HOLD_BUDGET_SECONDS the rest goes back to the queue and to the broker."""
    _consented_contacts(app, 5, start=1000)
    outbox_ids = sorted(_queued_campaign(app))
    monkeypatch.setattr(delivery, "HOLD_BUDGET_SECONDS", 0.25)
    smtp.delay = 0.2

    outcomes = _deliver_many(app, outbox_ids)

    sent = [i for i in outbox_ids if outcomes[i].status == "sent"]
    back = [
        i for i in outbox_ids if outcomes[i] == delivery.Delivery("queued", delivery.OUT_OF_TIME)
    ]
    assert 1 <= len(sent) < 5 and sent + back == outbox_ids
    queued = broker.queues["mail"]
    jobs = []
    while not queued.empty():
        jobs.append(dramatiq.Message.decode(queued.get_nowait()))
        queued.task_done()
    assert [job.args[0] for job in jobs] == [back]
    with app.app_context():
        handed = db.session.scalars(
            sa.select(OutboxMessage.handed_over_at).where(OutboxMessage.id.in_(back))
        ).all()
        db.session.remove()
    assert all(at is not None for at in handed)

    smtp.delay = 0.0
    again = _deliver_many(app, back)
    assert {o.status for o in again.values()} == {"sent"}
    assert len(smtp.wait_for(5)) == 5
    assert len({str(m["To"]) for m in smtp.messages}) == 5
