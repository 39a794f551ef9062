"""Campaigns with a real dramatiq worker and a real SMTP server (aiosmtpd in this process)."""

from __future__ import annotations

import asyncio
import email
import email.policy
import queue
import random
import threading
import time
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from consent.ledger import record
from consent.models import EventKind
from consent.services import record_objection
from crm.models import Contact
from extensions import db
from kernel.access import Actor
from kernel.timestamps import utcnow
from mailing import campaigns
from mailing.campaigns import CampaignInput
from mailing.models import MailStatus, OutboxMessage
from mailing.outbox import sweep
from tests.mailing.conftest import SmtpSink, text_of
from tests.mailing.helpers import consented_contacts

STAFF = Actor(kind="user", name="marketer@example.com", role="marketing")
SALES = Actor(kind="user", name="sales@example.com", role="sales")
TEXTS = CampaignInput(
    topic="newsletter",
    subject_sv="Nyheter i november",
    body_sv="Hej! Här är månadens nyheter.",
    subject_en="News in November",
    body_en="Hello! Here is this month's news.",
)


def _consented_contacts(app: Any, count: int, start: int = 0) -> list[int]:
    """``count`` contacts with a confirmed newsletter consent, in one transaction."""
    people = [
        (f"person{index}@example.se", None, "sv" if index % 2 else "en")
        for index in range(start, start + count)
    ]
    return consented_contacts(app, people)


def _outbox_of(app: Any, campaign_id: int) -> list[tuple[int, str, str | None]]:
    with app.app_context():
        rows = db.session.execute(
            sa.select(OutboxMessage.contact_id, OutboxMessage.status, OutboxMessage.block_reason)
            .where(OutboxMessage.campaign_id == campaign_id)
            .order_by(OutboxMessage.contact_id)
        ).all()
        db.session.remove()
        return [tuple(r) for r in rows]  # type: ignore[misc]


class TimedSink(SmtpSink):
    """The SMTP server notes, per recipient, when it accepted a message (before its 250)."""

    def __init__(self) -> None:
        super().__init__()
        self.accepted: list[tuple[str, float]] = []
        # Addresses whose objection is posted the moment their message arrives.
        self.race: set[str] = set()
        self.race_queue: queue.Queue[str] = queue.Queue()
        self.committed_at: dict[str, float] = {}

    def start(self) -> None:
        from aiosmtpd.controller import Controller

        sink = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
                parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
                for address in envelope.rcpt_tos:
                    if address in sink.race:
                        # Object while this very message is between the last
                        # check and the server's "250": the objection must not
                        # be able to commit before we answer.
                        sink.race_queue.put(address)
                        for _ in range(15):
                            if address in sink.committed_at:
                                break
                            await asyncio.sleep(0.01)
                with sink.lock:
                    sink.messages.append(parsed)  # type: ignore[arg-type]
                    for address in envelope.rcpt_tos:
                        sink.accepted.append((address, time.monotonic()))
                return "250 Message accepted for delivery"

        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self.controller.start()


def test_no_email_reaches_smtp_after_the_contacts_objection_committed(app, mail_worker) -> None:
    """The issue's test: 2,000 recipients, 200 objections committed while the campaign sends."""
    sink = TimedSink()
    sink.start()
    previous = app.config.get("SMTP_URL")
    app.config["SMTP_URL"] = sink.url
    try:
        ids = _consented_contacts(app, 2_000)
        # 180 objections in random order while the campaign sends, and 20 more
        # each posted while that contact's own message is being accepted.
        background = ids[::10][:180]
        random.Random(4).shuffle(background)
        racers = ids[5::100]
        objectors = background + racers
        committed_at = sink.committed_at
        address_of = {cid: f"person{cid - ids[0]}@example.se" for cid in objectors}
        sink.race = {address_of[cid] for cid in racers}
        id_of = {address: cid for cid, address in address_of.items()}

        def objecting(next_contact: Any) -> None:
            with app.app_context():
                session = db.session()

                def note_commit(_session: Any) -> None:
                    note_commit.at = time.monotonic()  # type: ignore[attr-defined]

                sa.event.listen(session, "after_commit", note_commit)
                while (contact_id := next_contact()) is not None:
                    record_objection(SALES, contact_id, received_via="phone")
                    committed_at[address_of[contact_id]] = note_commit.at  # type: ignore[attr-defined]
                db.session.remove()

        pending = iter(background)
        objector = threading.Thread(target=objecting, args=(lambda: next(pending, None),))

        def next_racer() -> int | None:
            try:
                return id_of[sink.race_queue.get(timeout=60)]
            except queue.Empty:
                return None

        raced = 0

        def next_race() -> int | None:
            nonlocal raced
            raced += 1
            return next_racer() if raced <= len(racers) else None

        racer = threading.Thread(target=objecting, args=(next_race,))
        racer.start()
        with app.app_context():
            campaign = campaigns.create_campaign(STAFF, TEXTS)
            campaign_id = campaign.id
            result = campaigns.send_campaign(STAFF, campaign_id)
            assert result.newly_queued == 2_000
            sink.wait_for(50)  # the campaign is on its way: now the objections come in
            objector.start()
            db.session.remove()
        objector.join(timeout=60)
        racer.join(timeout=60)
        mail_worker.drain(timeout_ms=60_000)

        late = [
            (address, accepted - committed_at[address])
            for address, accepted in sink.accepted
            if address in committed_at and accepted >= committed_at[address]
        ]
        assert late == [], f"emails accepted by SMTP after the objection committed: {late[:5]}"
        received = [address for address, _ in sink.accepted]
        assert len(received) == len(set(received)), "a contact received the campaign twice"

        rows = _outbox_of(app, campaign_id)
        with app.app_context():
            report = campaigns.report(campaign_id)
            emails = dict(db.session.execute(sa.select(Contact.id, Contact.email)).all())
            db.session.remove()
        objector_emails = {emails[c] for c in objectors}
        blocked = {emails[c] for c, status, _ in rows if status == MailStatus.BLOCKED}
        # The objections really came in while the campaign was sending: some
        # objectors had their email already, the others were stopped.
        assert blocked and blocked <= objector_emails
        assert objector_emails & set(received)
        assert objector_emails == blocked | (objector_emails & set(received))
        assert set(report.blocked_by_reason) <= {"suppressed", "objection"}
        # Every contact is accounted for, and the report matches what SMTP saw.
        assert report.audience == 2_000
        assert report.sent + report.blocked + report.failed == report.audience
        assert report.queued == 0 and report.status == "sent"
        assert report.sent == len(received)
        assert report.blocked == len(blocked)
    finally:
        app.config["SMTP_URL"] = previous
        sink.stop()


def test_campaign_email_is_in_the_contacts_language_with_unsubscribe(
    app, mail_worker, smtp
) -> None:
    _consented_contacts(app, 2)
    with app.app_context():
        campaign = campaigns.create_campaign(STAFF, TEXTS)
        campaigns.send_campaign(STAFF, campaign.id)
        db.session.remove()
    mail_worker.drain()
    (to_english,) = smtp.to("person0@example.se")
    (to_swedish,) = smtp.to("person1@example.se")
    assert to_english["Subject"] == "News in November"
    assert to_swedish["Subject"] == "Nyheter i november"
    assert "Här är månadens nyheter." in text_of(to_swedish)
    assert "/unsubscribe/" in text_of(to_english)
    assert to_english["List-Unsubscribe"].startswith("<http://localhost/unsubscribe/")
    assert to_english["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_sending_again_creates_no_duplicates(app, mail_worker, smtp) -> None:
    _consented_contacts(app, 5)
    with app.app_context():
        campaign_id = campaigns.create_campaign(STAFF, TEXTS).id
        first = campaigns.send_campaign(STAFF, campaign_id)
        db.session.remove()
    mail_worker.drain()
    _consented_contacts(app, 2, start=100)  # eligible since the first send
    with app.app_context():
        second = campaigns.send_campaign(STAFF, campaign_id)
        third = campaigns.send_campaign(STAFF, campaign_id)
        db.session.remove()
    mail_worker.drain()
    with app.app_context():
        report = campaigns.report(campaign_id)
        db.session.remove()
    assert (first.newly_queued, second.newly_queued, third.newly_queued) == (5, 2, 0)
    assert len(smtp.messages) == 7
    assert len({str(m["To"]) for m in smtp.messages}) == 7
    assert (report.audience, report.sent) == (7, 7)


def test_report_counts_blocked_sends_by_reason(app, smtp, request) -> None:
    ids = _consented_contacts(app, 6)
    with app.app_context():
        campaign_id = campaigns.create_campaign(STAFF, TEXTS).id
        # Queued while no worker runs: the standings change before anything leaves.
        campaigns.send_campaign(STAFF, campaign_id)
        record_objection(SALES, ids[0], received_via="letter")
        record_objection(SALES, ids[1], channel="email", received_via="phone")
        contact = db.session.get(Contact, ids[2])
        record(contact, EventKind.UNSUBSCRIBED, actor=SALES, source="staff", topic="newsletter")
        db.session.commit()
        db.session.remove()
    mail_worker = request.getfixturevalue("mail_worker")  # drops the jobs queued above
    with app.app_context():
        # The sweeper hands over what no worker ran.
        assert len(sweep(at=utcnow() + timedelta(minutes=11))) == 6
        db.session.remove()
    mail_worker.drain()
    with app.app_context():
        report = campaigns.report(campaign_id)
        db.session.remove()
    # An objection to every channel also suppresses the address; either code may say so.
    by_reason = report.blocked_by_reason
    assert by_reason.get("objection", 0) + by_reason.get("suppressed", 0) == 2
    assert set(by_reason) <= {"objection", "suppressed", "unsubscribed"}
    assert by_reason["unsubscribed"] == 1
    assert (report.sent, report.blocked, report.failed, report.audience) == (3, 3, 0, 6)
    assert len(smtp.messages) == 3


def test_first_email_to_an_industry_list_contact_carries_the_art14_notice_once(
    app, admin_api, mail_worker, smtp
) -> None:
    listed = {"type": "legitimate_interest", "kind": "industry_list", "source": "fair-list-2026"}
    admin_api.post(
        "/api/v1/contacts",
        json={"email": "listad@bransch.se", "country": "SE", "language": "sv", "basis": listed},
    )
    events = CampaignInput(
        topic="events",
        subject_sv="Mässa",
        body_sv="Välkommen!",
        subject_en="Fair",
        body_en="Welcome!",
    )
    with app.app_context():
        first = campaigns.create_campaign(STAFF, events)
        campaigns.send_campaign(STAFF, first.id)
        db.session.remove()
    mail_worker.drain()
    (message,) = smtp.to("listad@bransch.se")
    assert 'Var vi fick din adress: från branschlistan "fair-list-2026"' in text_of(message)
    with app.app_context():
        assert db.session.scalar(sa.select(Contact.art14_notice_owed_since)) is None
        second = campaigns.create_campaign(STAFF, events)
        campaigns.send_campaign(STAFF, second.id)
        db.session.remove()
    mail_worker.drain()
    later = smtp.to("listad@bransch.se")[-1]
    assert later is not message and "Var vi fick din adress" not in text_of(later)
