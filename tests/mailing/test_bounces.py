"""Returned mail changes decisions (issue 21): VERP, parsing, the ledger's effects,
and ``flask bounces ingest`` run as an MTA runs it (a real subprocess)."""

from __future__ import annotations

import email
import os
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from email.message import Message
from email.utils import getaddresses
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from consent.models import BounceReport, EventKind
from extensions import db
from kernel.timestamps import utcnow
from mailing import campaigns
from mailing.bounces import (
    Bounce,
    UnreadableMessage,
    ingest_message,
    parse_message,
    record_bounce,
)
from mailing.delivery import deliver
from mailing.models import OutboxMessage
from tests.conftest import count_rows, service_unavailable
from tests.mailing.bounce_samples import arf, dsn, ingest, out_of_office, qmail_bounce
from tests.mailing.helpers import consented_contacts, decision, events
from tests.mailing.test_campaigns import STAFF, TEXTS

ADDRESS = "anna.andersson@example.se"
BOUNCES = "bounces@example.com"


@pytest.fixture
def verp(app: Any) -> Iterator[str]:
    previous = app.config.get("BOUNCE_ADDRESS")
    app.config["BOUNCE_ADDRESS"] = BOUNCES
    yield BOUNCES
    app.config["BOUNCE_ADDRESS"] = previous


def send_campaign_to(app: Any, address: str = ADDRESS) -> tuple[int, int, str]:
    """A contact with a confirmed newsletter consent and one campaign email sent
    to it; returns the contact id, the outbox row id and its Message-ID."""
    (contact_id,) = consented_contacts(app, [(address, "Anna", "en")])
    with app.app_context():
        campaign = campaigns.create_campaign(STAFF, TEXTS)
        campaigns.send_campaign(STAFF, campaign.id)
        row = db.session.scalar(
            sa.select(OutboxMessage).where(OutboxMessage.campaign_id == campaign.id)
        )
        outbox_id, message_id = row.id, row.message_id
        db.session.remove()
        # A running worker (the stub_worker fixture) may have taken the row first:
        # then this delivery skips it, and the test waits for the worker's.
        if deliver(outbox_id).status != "sent":
            deadline = time.monotonic() + 20
            while db.session.get(OutboxMessage, outbox_id).status != "sent":
                assert time.monotonic() < deadline, "the campaign email was never sent"
                db.session.remove()
                time.sleep(0.05)
        db.session.remove()
    return contact_id, outbox_id, message_id


def reports(app: Any) -> list[BounceReport]:
    with app.app_context():
        rows = list(db.session.scalars(sa.select(BounceReport).order_by(BounceReport.id)))
        db.session.expunge_all()
        db.session.remove()
    return rows


def email_reasons(admin_api: Any, contact_id: int) -> set[str]:
    found = admin_api.get(f"/api/v1/contacts/{contact_id}/permissions").json["decisions"]
    return {d["reason"] for d in found if d["channel"] == "email"}


# --- VERP --------------------------------------------------------------------------


def test_every_message_leaves_with_an_envelope_sender_naming_its_outbox_row(
    app, smtp, verp
) -> None:
    _, outbox_id, _ = send_campaign_to(app)
    (sender,) = smtp.senders
    local, _, domain = sender.partition("@")
    assert domain == "example.com"
    assert re.fullmatch(rf"bounces\+{outbox_id}-[a-z2-7]{{16}}", local)
    assert len(local) <= 64  # RFC 5321 4.5.3.1.1
    # The From header a person sees stays the service's address.
    assert "bounces" not in str(smtp.messages[0]["From"])


def test_without_bounce_address_the_envelope_sender_is_the_from_address(app, smtp) -> None:
    send_campaign_to(app)
    assert smtp.senders == ["no-reply@localhost"]


def test_a_mangled_dsn_is_matched_by_its_verp_address_alone(app, smtp, verp, admin_api) -> None:
    """The report names neither the recipient nor the Message-ID; the address it
    came back to names the message."""
    contact_id, outbox_id, _ = send_campaign_to(app)
    (sender,) = smtp.senders
    raw = dsn(to=sender, recipient="someone-else@forwarder.example", message_id=None)
    with app.app_context():
        result = ingest_message(raw)
        db.session.remove()
    ((_, outcome),) = result.outcomes
    assert (outcome.status, outcome.matched_by, outcome.outbox_id) == (
        "recorded",
        "verp",
        outbox_id,
    )
    assert email_reasons(admin_api, contact_id) == {"undeliverable"}


def test_a_wrong_verp_signature_changes_nothing(app, smtp, verp, admin_api) -> None:
    contact_id, outbox_id, message_id = send_campaign_to(app)
    forged = f"bounces+{outbox_id}-{'a' * 16}@example.com"
    with app.app_context():
        result = ingest_message(dsn(to=forged, recipient=ADDRESS, message_id=message_id))
        db.session.remove()
    assert result.ignored == "no_bounce"
    assert reports(app) == []
    assert email_reasons(admin_api, contact_id) == {"consent", "no_basis"}


# --- matching without a token --------------------------------------------------------


def test_without_a_token_the_returned_message_id_finds_the_message(app, smtp, admin_api) -> None:
    contact_id, outbox_id, message_id = send_campaign_to(app)
    with app.app_context():
        result = ingest_message(
            dsn(to="no-reply@localhost", recipient="mangled@x.example", message_id=message_id)
        )
        db.session.remove()
    ((_, outcome),) = result.outcomes
    assert (outcome.matched_by, outcome.outbox_id) == ("message_id", outbox_id)
    assert email_reasons(admin_api, contact_id) == {"undeliverable"}


def test_without_token_or_message_id_the_last_mail_to_the_address_in_30_days_counts(
    app, smtp
) -> None:
    _, outbox_id, _ = send_campaign_to(app)
    with app.app_context():
        outcome = record_bounce(Bounce(email=ADDRESS.upper(), type="hard", source="dsn"))
        db.session.remove()
    assert (outcome.matched_by, outcome.outbox_id) == ("recent_mail", outbox_id)


def test_mail_sent_more_than_30_days_ago_does_not_count(app, smtp, admin_api) -> None:
    contact_id, _, _ = send_campaign_to(app)
    with app.app_context():
        outcome = record_bounce(
            Bounce(email=ADDRESS, type="hard", source="dsn"), at=utcnow() + timedelta(days=31)
        )
        db.session.remove()
    assert (outcome.status, outcome.reason) == ("ignored", "not_our_message")
    assert email_reasons(admin_api, contact_id) == {"consent", "no_basis"}


def test_a_forged_arf_without_token_or_known_message_id_changes_nothing(
    app, smtp, admin_api
) -> None:
    """Anyone can mail the bounce address an ARF naming a recipient we mailed
    lately: without a VERP token or a Message-ID we sent it is no complaint
    (it would be a permanent objection), with or without VERP configured."""
    contact_id, _, _ = send_campaign_to(app)
    before = count_rows(app)
    for message_id in (None, "<forged@attacker.example>"):
        with app.app_context():
            result = ingest_message(arf(to=BOUNCES, recipient=ADDRESS, message_id=message_id))
            db.session.remove()
        ((_, outcome),) = result.outcomes
        assert (outcome.status, outcome.reason) == ("ignored", "not_our_message")
    assert count_rows(app) == before
    assert email_reasons(admin_api, contact_id) == {"consent", "no_basis"}


def test_a_forged_dsn_without_a_token_under_verp_changes_nothing(
    app, smtp, verp, admin_api
) -> None:
    """With BOUNCE_ADDRESS every genuine bounce of ours carries its token: a DSN
    without one (nor a Message-ID we sent) is ignored, not matched by address."""
    contact_id, _, _ = send_campaign_to(app)
    before = count_rows(app)
    with app.app_context():
        result = ingest_message(dsn(to=BOUNCES, recipient=ADDRESS, message_id=None))
        qmail = ingest_message(qmail_bounce(to=BOUNCES, recipient=ADDRESS))
        db.session.remove()
    for ingested in (result, qmail):
        ((_, outcome),) = ingested.outcomes
        assert (outcome.status, outcome.reason) == ("ignored", "not_our_message")
    assert count_rows(app) == before
    assert email_reasons(admin_api, contact_id) == {"consent", "no_basis"}


def test_the_authenticated_api_may_still_match_a_complaint_by_address(
    app, smtp, verp, admin_api
) -> None:
    """A verified provider or the API (``api:<source>``) is no forger: the
    address fallback stays for them."""
    contact_id, outbox_id, _ = send_campaign_to(app)
    with app.app_context():
        outcome = record_bounce(Bounce(email=ADDRESS, type="complaint", source="api:crm"))
        db.session.remove()
    assert (outcome.status, outcome.matched_by, outcome.outbox_id) == (
        "recorded",
        "recent_mail",
        outbox_id,
    )
    assert email_reasons(admin_api, contact_id) == {"objection"}


def test_a_dsn_for_an_address_we_never_mailed_changes_nothing(app, admin_api) -> None:
    (contact_id,) = consented_contacts(app, [(ADDRESS, "Anna", "en")])
    with app.app_context():
        result = ingest_message(dsn(to="no-reply@localhost", recipient=ADDRESS))
        db.session.remove()
    ((_, outcome),) = result.outcomes
    assert (outcome.status, outcome.reason) == ("ignored", "not_our_message")
    assert reports(app) == []
    assert email_reasons(admin_api, contact_id) == {"consent", "no_basis"}


# --- the three checks of the issue, through a real `flask bounces ingest -` -------------


def test_a_hard_dsn_piped_into_flask_bounces_ingest_makes_email_undeliverable(
    app, smtp, verp, admin_api
) -> None:
    contact_id, _, message_id = send_campaign_to(app)
    (sender,) = smtp.senders
    done = ingest(app, dsn(to=sender, recipient=ADDRESS, message_id=message_id))
    assert done.returncode == 0, done.stderr.decode()
    assert b"recorded: hard 5.1.1 -> undeliverable (matched by verp)" in done.stdout
    assert email_reasons(admin_api, contact_id) == {"undeliverable"}
    # The phone is another channel: a bounce says nothing about it.
    phone = decision(admin_api, contact_id, "newsletter", "phone")
    assert phone["reason"] != "undeliverable"
    (event,) = [e for e in events(admin_api, contact_id) if e["kind"] == "undeliverable"]
    assert "5.1.1" in event["note"] and message_id in event["note"]
    assert "User unknown" in event["note"]
    assert event["source"] == "bounce" and event["channel"] == "email"
    (report,) = reports(app)
    assert (report.type, report.status, report.source, report.matched_by) == (
        "hard",
        "5.1.1",
        "dsn",
        "verp",
    )
    assert report.campaign_id is not None and report.mail_kind == "marketing"
    assert report.event_id == event["id"]


def test_an_arf_complaint_piped_into_flask_bounces_ingest_is_an_objection_to_email(
    app, smtp, verp, admin_api
) -> None:
    contact_id, _, message_id = send_campaign_to(app)
    (sender,) = smtp.senders
    done = ingest(app, arf(to=sender, recipient=ADDRESS, message_id=message_id))
    assert done.returncode == 0, done.stderr.decode()
    assert b"-> objection" in done.stdout
    assert email_reasons(admin_api, contact_id) == {"objection"}
    phone = decision(admin_api, contact_id, "newsletter", "phone")
    assert phone["reason"] != "objection"
    (event,) = [e for e in events(admin_api, contact_id) if e["kind"] == "objected"]
    assert (event["channel"], event["source"]) == ("email", "complaint")


def test_an_out_of_office_reply_piped_into_flask_bounces_ingest_changes_nothing(
    app, smtp, verp, admin_api
) -> None:
    contact_id, _, _ = send_campaign_to(app)
    (sender,) = smtp.senders
    done = ingest(app, out_of_office(to=sender, sender=ADDRESS))
    assert done.returncode == 0, done.stderr.decode()
    assert b"ignored" in done.stdout
    assert email_reasons(admin_api, contact_id) == {"consent", "no_basis"}
    assert reports(app) == []
    assert not [e for e in events(admin_api, contact_id) if e["kind"] != "confirmed"]


def test_flask_bounces_ingest_asks_the_mta_to_retry_when_the_database_is_down(
    app, tmp_path
) -> None:
    """EX_TEMPFAIL (75): Postfix's pipe keeps the message and tries again."""
    missing = tmp_path / "no-such-folder" / "consent.db"
    done = ingest(app, dsn(to=BOUNCES, recipient=ADDRESS), DATABASE_URL=f"sqlite:///{missing}")
    assert done.returncode == 75, (done.stdout, done.stderr)
    assert b"try again later" in done.stderr


# --- what each report does ----------------------------------------------------------


def test_a_complaint_is_an_unsubscribe_from_everything_when_the_policy_says_so(
    app, smtp, admin_api
) -> None:
    from consent.topics import BouncePolicy

    contact_id, _, message_id = send_campaign_to(app)
    policy = app.extensions["marketing_policy"]
    app.extensions["marketing_policy"] = replace(
        policy, bounces=BouncePolicy(complaint="unsubscribe")
    )
    try:
        with app.app_context():
            ingest_message(arf(to="x@y.example", recipient=None, message_id=message_id))
            db.session.remove()
    finally:
        app.extensions["marketing_policy"] = policy
    kinds = [e["kind"] for e in events(admin_api, contact_id)]
    assert "unsubscribed" in kinds and "suppressed" in kinds and "objected" not in kinds
    # An unsubscribe from everything puts the address on the suppression list (R22).
    assert email_reasons(admin_api, contact_id) == {"suppressed"}


def test_a_complaint_suppresses_email_as_any_objection_to_email_does(app, smtp) -> None:
    from consent.models import ScopedSuppression

    _, _, message_id = send_campaign_to(app)
    with app.app_context():
        record_bounce(Bounce(email=ADDRESS, type="complaint", source="arf", message_id=message_id))
        kept = db.session.scalars(sa.select(ScopedSuppression)).all()
        assert [(k.topic, k.channel, k.kind) for k in kept] == [("*", "email", "objected")]
        db.session.remove()


def test_soft_bounces_make_the_address_undeliverable_only_at_the_policys_limit(
    app, smtp, admin_api
) -> None:
    """[bounces] soft_limit = 3 within soft_window_days = 30 (the shipped policy)."""
    contact_id, _, _ = send_campaign_to(app)
    now = utcnow()
    outcomes = []
    with app.app_context():
        for day, message in ((0, "<a@x>"), (10, "<b@x>"), (20, "<c@x>")):
            bounce = Bounce(
                email=ADDRESS,
                type="soft",
                source="dsn",
                status="4.2.2",
                message_id=message,
                occurred_at=now + timedelta(days=day),
            )
            outcomes.append(record_bounce(bounce, at=now + timedelta(days=day)).reason)
            db.session.remove()
            if day < 20:
                assert email_reasons(admin_api, contact_id) == {"consent", "no_basis"}
    assert outcomes == ["soft_bounce", "soft_bounce", "undeliverable"]
    assert email_reasons(admin_api, contact_id) == {"undeliverable"}


def test_soft_bounces_spread_wider_than_the_window_do_not_add_up(
    app, smtp, admin_api, monkeypatch
) -> None:
    import mailing.bounces as bounces

    # Each report is recorded when it happens (a date ahead of the clock counts
    # as now); the one message sent stays "recent" for all three.
    monkeypatch.setattr(bounces, "RECENT_MAIL", timedelta(days=60))
    contact_id, _, _ = send_campaign_to(app)
    now = utcnow()
    with app.app_context():
        for day in (0, 20, 40):
            when = now + timedelta(days=day)
            outcome = record_bounce(
                Bounce(
                    email=ADDRESS,
                    type="soft",
                    source="api",
                    message_id=f"<{day}@x>",
                    outbox_id=None,
                    occurred_at=when,
                ),
                at=when,
            )
            db.session.remove()
    assert outcome.reason == "soft_bounce"
    assert email_reasons(admin_api, contact_id) == {"consent", "no_basis"}


def test_a_delay_warning_is_no_bounce(app, smtp) -> None:
    _, _, message_id = send_campaign_to(app)
    with app.app_context():
        result = ingest_message(
            dsn(
                to="x@y", recipient=ADDRESS, status="4.4.7", action="delayed", message_id=message_id
            )
        )
        db.session.remove()
    assert result.ignored == "no_bounce"
    assert reports(app) == []


def test_a_plain_text_delay_warning_is_no_bounce(app) -> None:
    """flufl.bounce calls a "still trying" warning a temporary failure; counted as
    soft bounces, the warnings about one slow message would reach the soft limit."""
    raw = (
        "From: MAILER-DAEMON@mx.example.net\r\n"
        "To: x@y\r\n"
        "Subject: Delivery Status Notification (Delay)\r\n"
        "\r\n"
        "Delivery to the following recipient has been delayed:\r\n"
        "\r\n"
        f"     {ADDRESS}\r\n"
        "\r\n"
        "Message will be retried for 2 more day(s)\r\n"
    ).encode()
    with app.app_context():
        assert parse_message(raw) == []


def test_a_report_repeating_a_recipients_block_reports_it_once(app) -> None:
    raw = dsn(to="x@y", recipient=ADDRESS)
    block = raw[
        raw.index(b"Final-Recipient") : raw.index(b"--BOUNDARY\r\nContent-Type: text/rfc822")
    ]
    repeated = raw.replace(block, block + block)
    with app.app_context():
        found = parse_message(repeated)
    assert [(b.type, b.email) for b in found] == [("hard", ADDRESS)]


def test_a_failed_4xx_dsn_is_a_soft_bounce(app) -> None:
    with app.app_context():
        (bounce,) = parse_message(dsn(to="x@y", recipient=ADDRESS, status="4.2.2"))
    assert (bounce.type, bounce.status) == ("soft", "4.2.2")


def test_the_same_dsn_twice_is_recorded_once(app, smtp, admin_api) -> None:
    contact_id, _, message_id = send_campaign_to(app)
    raw = dsn(to="x@y", recipient=ADDRESS, message_id=message_id)
    with app.app_context():
        first = ingest_message(raw).outcomes[0][1]
        second = ingest_message(raw).outcomes[0][1]
        db.session.remove()
    assert (first.status, second.status) == ("recorded", "duplicate")
    assert len(reports(app)) == 1
    assert len([e for e in events(admin_api, contact_id) if e["kind"] == "undeliverable"]) == 1


def test_the_same_arf_twice_is_one_objection_and_one_feed_item(app, smtp, verp, admin_api) -> None:
    """A complaint redelivered, and another about mail matched only by address
    (the API), write no second objection: the one in force stands (R11)."""
    from tests.feed.test_change_feed import of_type, read_all

    contact_id, _, message_id = send_campaign_to(app)
    (sender,) = smtp.senders
    _, cursor = read_all(admin_api)
    raw = arf(to=sender, recipient=ADDRESS, message_id=message_id)
    with app.app_context():
        first = ingest_message(raw).outcomes[0][1]
        second = ingest_message(raw).outcomes[0][1]
        third = record_bounce(Bounce(email=ADDRESS, type="complaint", source="api:crm"))
        db.session.remove()
    assert (first.status, first.reason) == ("recorded", "objection")
    assert second.status == "duplicate"
    assert (third.status, third.reason) == ("recorded", "objection")
    objected = [e for e in events(admin_api, contact_id) if e["kind"] == "objected"]
    assert len(objected) == 1
    items, _ = read_all(admin_api, cursor)
    mine = [i for i in items if i.get("contact_id") == contact_id]
    assert len(of_type(mine, "contact.decisions_changed")) == 1
    assert email_reasons(admin_api, contact_id) == {"objection"}


def test_the_same_soft_dsn_delivered_again_counts_once(app, smtp, admin_api) -> None:
    """No token and no Message-ID of ours (matched by the last mail to the
    address): the report's own Message-ID still tells the repeat apart, so
    three deliveries of one soft DSN do not reach the soft limit of 3."""
    contact_id, _, _ = send_campaign_to(app)
    raw = dsn(
        to="no-reply@localhost",
        recipient=ADDRESS,
        status="4.2.2",
        extra_headers={"Message-ID": "<dsn.1@mx.example.net>"},
    )
    with app.app_context():
        outcomes = [ingest_message(raw).outcomes[0][1] for _ in range(3)]
        db.session.remove()
    assert [(o.status, o.reason) for o in outcomes] == [
        ("recorded", "soft_bounce"),
        ("duplicate", "duplicate"),
        ("duplicate", "duplicate"),
    ]
    assert outcomes[0].matched_by == "recent_mail"
    assert len(reports(app)) == 1
    assert email_reasons(admin_api, contact_id) == {"consent", "no_basis"}


def test_a_bounce_of_a_transactional_mail_is_recorded_too(app, admin_api) -> None:
    from tests.mailing.helpers import signup

    client = app.test_client()
    assert signup(client, ADDRESS).status_code in (200, 202)
    with app.app_context():
        row = db.session.scalar(sa.select(OutboxMessage).where(OutboxMessage.template == "confirm"))
        outbox_id, message_id, contact_id = row.id, row.message_id, row.contact_id
        db.session.remove()
        assert deliver(outbox_id).status == "sent"
        result = ingest_message(dsn(to="x@y", recipient=ADDRESS, message_id=message_id))
        db.session.remove()
    assert result.outcomes[0][1].reason == "undeliverable"
    (report,) = reports(app)
    assert (report.mail_kind, report.outbox_id) == ("transactional", outbox_id)
    assert "transactional mail" in events(admin_api, contact_id)[-1]["note"]


def test_address_fixed_clears_undeliverable(app, smtp, admin_api) -> None:
    from consent.deliverability import mark_address_fixed

    contact_id, _, message_id = send_campaign_to(app)
    with app.app_context():
        record_bounce(Bounce(email=ADDRESS, type="hard", source="dsn", message_id=message_id))
        db.session.remove()
        assert email_reasons(admin_api, contact_id) == {"undeliverable"}
        mark_address_fixed(STAFF, contact_id, note="typo corrected")
        db.session.remove()
    assert email_reasons(admin_api, contact_id) == {"consent", "no_basis"}
    (event,) = [e for e in events(admin_api, contact_id) if e["kind"] == "deliverable"]
    assert "address fixed" in event["note"] and event["recorded_by"] == "user:" + STAFF.name


def test_a_provider_event_older_than_address_fixed_changes_nothing(app, smtp, admin_api) -> None:
    """A provider's late (or replayed) event dated before staff's "address
    fixed" is kept as evidence only; one dated in the future counts as now."""
    from consent.deliverability import mark_address_fixed

    contact_id, _, message_id = send_campaign_to(app)
    now = utcnow()
    with app.app_context():
        record_bounce(Bounce(email=ADDRESS, type="hard", source="dsn", message_id=message_id))
        db.session.remove()
        mark_address_fixed(STAFF, contact_id, note="mailbox restored")
        db.session.remove()
        late = record_bounce(
            Bounce(
                email=ADDRESS,
                type="hard",
                source="sendgrid",
                status="5.1.1",
                occurred_at=now - timedelta(hours=1),
            )
        )
        db.session.remove()
    assert (late.status, late.reason) == ("ignored", "address_fixed_since")
    assert email_reasons(admin_api, contact_id) == {"consent", "no_basis"}
    assert len([e for e in events(admin_api, contact_id) if e["kind"] == "undeliverable"]) == 1
    assert len(reports(app)) == 2  # the evidence is kept
    with app.app_context():
        future = record_bounce(
            Bounce(
                email=ADDRESS,
                type="soft",
                source="ses",
                status="4.2.2",
                occurred_at=utcnow() + timedelta(days=365),
            )
        )
        db.session.remove()
    assert future.reason == "soft_bounce"
    assert reports(app)[-1].occurred_at <= utcnow()


def test_address_fixed_restarts_the_soft_count(app, smtp, admin_api) -> None:
    from consent.deliverability import mark_address_fixed

    contact_id, _, _ = send_campaign_to(app)
    now = utcnow()

    def soft(day: int) -> str:
        bounce = Bounce(email=ADDRESS, type="soft", source="api", status="4.2.2")
        when = now + timedelta(days=day)
        return record_bounce(replace(bounce, occurred_at=when), at=when).reason

    with app.app_context():
        assert [soft(-2), soft(-1)] == ["soft_bounce", "soft_bounce"]
        db.session.remove()
        mark_address_fixed(STAFF, contact_id)
        db.session.remove()
        assert soft(1) == "soft_bounce"  # the third within 30 days, the first since the fix
        db.session.remove()
    assert email_reasons(admin_api, contact_id) == {"consent", "no_basis"}


def test_address_fixed_is_refused_when_nothing_bounced(app, smtp) -> None:
    from consent.deliverability import mark_address_fixed
    from kernel.errors import Conflict

    contact_id, _, _ = send_campaign_to(app)
    with app.app_context(), pytest.raises(Conflict):
        mark_address_fixed(STAFF, contact_id)


def test_a_confirmation_by_the_address_owner_clears_undeliverable(app, admin_api) -> None:
    """The person pressed the button behind a link mailed to the address: it works."""
    from tests.mailing.helpers import signup

    client = app.test_client()
    signup(client, ADDRESS)
    with app.app_context():
        row = db.session.scalar(sa.select(OutboxMessage).where(OutboxMessage.template == "confirm"))
        outbox_id, message_id, contact_id = row.id, row.message_id, row.contact_id
        db.session.remove()
        deliver(outbox_id)
        record_bounce(Bounce(email=ADDRESS, type="hard", source="dsn", message_id=message_id))
        db.session.remove()
    assert "undeliverable" in email_reasons(admin_api, contact_id)
    _confirm_by_link(app, client, outbox_id)
    kinds = [e["kind"] for e in events(admin_api, contact_id)]
    assert kinds.index("deliverable") > kinds.index("undeliverable")
    assert decision(admin_api, contact_id, "newsletter")["reason"] == "consent"


def _confirm_by_link(app: Any, client: Any, outbox_id: int) -> None:
    import email as email_lib

    from mailing.messages import confirm_url

    with app.app_context():
        row = db.session.get(OutboxMessage, outbox_id)
        url = confirm_url(int(row.params["request_id"]))
        db.session.remove()
    path = url.removeprefix("http://localhost")
    assert client.post(path).status_code in (200, 303, 302)
    del email_lib


# --- parsing ------------------------------------------------------------------------


def test_a_dsn_with_auto_submitted_is_still_a_bounce(app) -> None:
    with app.app_context():
        found = parse_message(dsn(to="x@y", recipient=ADDRESS))
    assert [(b.type, b.status, b.email) for b in found] == [("hard", "5.1.1", ADDRESS)]


@pytest.mark.parametrize(
    "header",
    ["Auto-Submitted: auto-replied", "X-Autoreply: yes", "Precedence: auto_reply"],
)
def test_each_auto_reply_mark_alone_makes_a_message_no_bounce(app, header: str) -> None:
    """A qmail-like text that names an address, marked as an auto-reply."""
    name, _, value = header.partition(": ")
    # Written by a person's mail program (an out-of-office quoting a bounce), not a mail system.
    raw = qmail_bounce(to="x@y", recipient=ADDRESS).replace(
        b"From: MAILER-DAEMON@mx.example.net", b"From: anna.andersson@example.se"
    )
    head, _, body = raw.partition(b"\n\n")
    marked = head + f"\n{name}: {value}".encode() + b"\n\n" + body
    with app.app_context():
        assert parse_message(raw) != []
        assert parse_message(marked) == []


def test_an_exim_bounce_with_auto_submitted_is_still_a_bounce(app) -> None:
    """Exim's plain-text bounce carries Auto-Submitted and X-Failed-Recipients."""
    raw = qmail_bounce(to="x@y", recipient=ADDRESS).replace(
        b"Subject: failure notice",
        b"Subject: Mail delivery failed\nAuto-Submitted: auto-replied\n"
        + f"X-Failed-Recipients: {ADDRESS}".encode(),
    )
    with app.app_context():
        found = parse_message(raw)
    assert [(b.type, b.email) for b in found] == [("hard", ADDRESS)]


def test_a_bounce_without_a_dsn_is_read_by_flufl_bounce(app) -> None:
    with app.app_context():
        found = parse_message(qmail_bounce(to="x@y", recipient=ADDRESS))
    assert [(b.type, b.email, b.source) for b in found] == [("hard", ADDRESS, "bounce")]


def test_a_dsn_names_the_original_recipient_not_where_it_was_forwarded(app) -> None:
    """Original-Recipient is the address we sent to; Final-Recipient may be an
    alias's target or no mail address at all (x400)."""
    raw = dsn(to="x@y", recipient=ADDRESS)
    forwarded = raw.replace(
        f"Final-Recipient: rfc822; {ADDRESS}".encode(),
        b"Final-Recipient: rfc822; anna@mbox.internal",
    )
    x400 = raw.replace(
        f"Final-Recipient: rfc822; {ADDRESS}".encode(), b"Final-Recipient: x400; /S=anna/C=SE/"
    )
    only_x400 = x400.replace(f"Original-Recipient: rfc822;{ADDRESS}\r\n".encode(), b"")
    with app.app_context():
        for message in (forwarded, x400):
            assert [(b.type, b.email) for b in parse_message(message)] == [("hard", ADDRESS)]
        assert parse_message(only_x400) == []


@pytest.mark.parametrize(
    "action", ["failed (Bad destination mailbox address)", "failure", "error", "Failed"]
)
def test_a_failed_action_is_read_as_mtas_write_it(app, action: str) -> None:
    with app.app_context():
        found = parse_message(dsn(to="x@y", recipient=ADDRESS, action=action))
    assert [(b.type, b.email, b.status) for b in found] == [("hard", ADDRESS, "5.1.1")]


@pytest.mark.parametrize("action", ["delayed", "delivered", "relayed", "expanded"])
def test_other_actions_are_no_bounce(app, action: str) -> None:
    with app.app_context():
        assert parse_message(dsn(to="x@y", recipient=ADDRESS, action=action, status="4.4.1")) == []


def test_a_dsn_block_after_a_blank_continuation_line_is_read(app) -> None:
    """A single block, then a trailing empty one (a blank line before the boundary)."""
    raw = dsn(to="x@y", recipient=ADDRESS).replace(
        b"(UTC)\r\n\r\nFinal-Recipient", b"(UTC)\r\n \r\nFinal-Recipient"
    )
    raw = raw.replace(
        b"\r\n\r\n--BOUNDARY\r\nContent-Type: text/rfc822",
        b"\r\n\r\n\r\n--BOUNDARY\r\nContent-Type: text/rfc822",
    )
    with app.app_context():
        found = parse_message(raw)
    assert [(b.type, b.email) for b in found] == [("hard", ADDRESS)]


def test_a_report_without_a_recipient_block_is_read_by_the_detectors(app) -> None:
    """Some MTAs send a delivery-status part with only the Reporting-MTA, or
    none at all; the recipient is in the text, as in a qmail bounce."""
    text = qmail_bounce(to="x@y", recipient=ADDRESS).decode()
    body = text.partition("\n\n")[2]
    head = (
        "From: MAILER-DAEMON@mx.example.net\r\nTo: x@y\r\nSubject: failure notice\r\n"
        "MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; "
        'boundary="B"\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\n'
    )
    status = "--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.net\r\n\r\n"
    for raw in (head + body + status + "--B--\r\n", head + body + "--B--\r\n"):
        with app.app_context():
            found = parse_message(raw.encode())
        assert [(b.type, b.email, b.source) for b in found] == [("hard", ADDRESS, "bounce")]


def test_the_arf_complaint_names_its_recipient_and_message(app) -> None:
    with app.app_context():
        (found,) = parse_message(arf(to="x@y", recipient=ADDRESS, message_id="<m@localhost>"))
    assert (found.type, found.email, found.message_id) == ("complaint", ADDRESS, "<m@localhost>")


def test_a_message_over_the_limit_is_refused_before_parsing(app, monkeypatch) -> None:
    import mailing.bounces as bounces

    def must_not_parse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("parsed")

    monkeypatch.setattr(bounces.email, "message_from_bytes", must_not_parse)
    previous = app.config["BOUNCE_MAX_BYTES"]
    app.config["BOUNCE_MAX_BYTES"] = 1000
    try:
        with app.app_context():
            assert ingest_message(b"x" * 1001).ignored == "too_large"
    finally:
        app.config["BOUNCE_MAX_BYTES"] = previous


def test_flask_bounces_ingest_refuses_a_50_mb_message_without_reading_it_all(app) -> None:
    big = dsn(to="x@y", recipient=ADDRESS) + b"x" * (50 * 1024 * 1024)
    done = ingest(app, big)
    assert done.returncode == 0
    assert b"ignored: too large" in done.stdout
    assert reports(app) == []


@pytest.mark.parametrize(
    "raw",
    [
        b"\x00\xff\xfe garbage",
        b'Content-Type: multipart/report; report-type=delivery-status; boundary="x"\r\n\r\n'
        b"--x\r\nContent-Type: message/delivery-status\r\n\r\n\x00\x00\r\n--x",
        b"Content-Type: multipart/report; report-type=feedback-report\r\n\r\nno boundary",
        b"Content-Type: message/rfc822\r\n\r\n" * 200,
        b'From: a\r\nContent-Type: text/plain; charset="nonsense-charset"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\n!!!not base64",
        b"Final-Recipient: rfc822; \r\nAction: failed\r\nStatus: 9.9.9\r\n",
    ],
)
def test_malformed_mime_never_crashes(app, raw: bytes) -> None:
    with app.app_context():
        try:
            found = parse_message(raw)
        except UnreadableMessage:
            found = []
        assert all(isinstance(b, Bounce) for b in found)
        ingest_message(raw)


def test_every_bounce_kind_appears_in_the_ledger(app, smtp) -> None:
    """The kinds the staff timeline labels (kernel/i18n.py event.*)."""
    from kernel.i18n import catalog

    for kind in (EventKind.BOUNCED, EventKind.DELIVERABLE, EventKind.UNDELIVERABLE):
        assert f"event.{kind.value}" in catalog("sv")


def test_a_contacts_bounce_reports_go_with_its_erasure(app, smtp, admin_api) -> None:
    """The diagnostic may hold the address: the evidence goes with the person."""
    contact_id, _, message_id = send_campaign_to(app)
    with app.app_context():
        record_bounce(Bounce(email=ADDRESS, type="hard", source="dsn", message_id=message_id))
        db.session.remove()
    assert len(reports(app)) == 1
    assert admin_api.delete(f"/api/v1/contacts/{contact_id}").status_code in (200, 204)
    assert reports(app) == []


# --- flufl.bounce's own samples -----------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]


def _flufl_samples() -> list[Path]:
    """flufl.bounce's own sample bounces: from ``FLUFL_BOUNCE_SAMPLES`` (that
    folder only, where it is set), else
    ``.venv/flufl-bounce-samples`` (where .ci/setup puts the ``tests/data/*.txt``
    of the installed version's sdist; the 6.0 wheel ships none), else the venv
    running the tests (a worktree sharing another checkout's .venv), else the
    installed package itself, should a build ship them there."""
    from importlib import resources

    wanted = os.environ.get("FLUFL_BOUNCE_SAMPLES")
    if wanted:
        return sorted(Path(wanted).glob("*.txt"))
    folders = [ROOT / ".venv" / "flufl-bounce-samples", Path(sys.prefix) / "flufl-bounce-samples"]
    for folder in folders:
        if folder.is_dir() and (found := sorted(folder.glob("*.txt"))):
            return found
    root = resources.files("flufl.bounce")
    for name in ("tests/data", "testing/data", "data"):
        candidate = root.joinpath(*name.split("/"))
        if candidate.is_dir():
            found = sorted(
                (Path(str(p)) for p in candidate.iterdir() if p.name.endswith(".txt")),
                key=lambda p: p.name,
            )
            if found:
                return found
    return []


def _text(address: bytes | str) -> str:
    return (address.decode("ascii", "replace") if isinstance(address, bytes) else address).lower()


def _parts(message: Message) -> set[str]:
    return {part.get_content_type() for part in message.walk()}


def _an_auto_reply(message: Message, _addresses: set[str]) -> bool:
    """docs/bounces.md: a message marked as an auto-reply (``X-Autoreply`` and
    kin, ``Precedence: auto_reply``, or ``Auto-Submitted`` other than ``no``)
    that has no delivery-status or feedback-report part and does not come from
    a mail system (MAILER-DAEMON / postmaster, ``X-Failed-Recipients``) is
    never a bounce: an out-of-office or a mailbox rule's notice says the
    address works. Written out here, not taken from the parser."""
    if _parts(message) & {"message/delivery-status", "message/feedback-report"}:
        return False
    if message.get("X-Failed-Recipients") is not None:
        return False
    senders = [a.lower() for _, a in getaddresses([str(v) for v in message.get_all("From", [])])]
    if any(a.partition("@")[0] in ("mailer-daemon", "postmaster") for a in senders):
        return False
    submitted = str(message.get("Auto-Submitted") or "no").strip().lower()
    precedence = str(message.get("Precedence") or "").strip().lower()
    return (
        not submitted.startswith("no")
        or precedence in ("auto_reply", "auto-reply")
        or any(message.get(h) is not None for h in ("X-Autoreply", "X-Autorespond"))
    )


def _only_delays_for(message: Message, addresses: set[str]) -> bool:
    """A delay warning: every DSN block naming one of the addresses says
    ``Action: delayed`` (the MTA is still trying), never a bounce."""
    blocks = [
        block
        for part in message.walk()
        if part.get_content_type() == "message/delivery-status"
        and isinstance(part.get_payload(), list)
        for block in part.get_payload()
        if any(
            a in str(block.get(h) or "").lower()
            for h in ("Final-Recipient", "Original-Recipient")
            for a in addresses
        )
    ]
    return bool(blocks) and all(
        str(b.get("Action") or "").strip().lower().startswith("delayed") for b in blocks
    )


# Why our parser may report none of the addresses flufl.bounce calls permanent
# failures, by reason (never by file): each is a rule of docs/bounces.md.
LEGITIMATE_DISAGREEMENT = {
    "an auto-reply without a DSN part is never a bounce": _an_auto_reply,
    "Action: delayed is a warning, not a bounce": _only_delays_for,
}


def test_flufl_bounces_own_samples_are_read_as_flufl_bounce_reads_them(app) -> None:
    """Every sample: ``parse_message`` raises nothing but its documented
    ``UnreadableMessage``; where flufl.bounce's own detector (``scan_message``)
    finds permanent failures, we report a bounce for one of those addresses or
    have a reason of LEGITIMATE_DISAGREEMENT; a DSN is never a complaint."""
    from flufl.bounce import scan_message

    samples = _flufl_samples()
    if not samples:
        service_unavailable(
            "flufl-samples: no sample bounces of flufl.bounce found (FLUFL_BOUNCE_SAMPLES, "
            ".venv/flufl-bounce-samples, the installed package); run .ci/setup"
        )
    wrong: list[str] = []
    excused: dict[str, list[str]] = {}
    compared = 0
    with app.app_context():
        for sample in samples:
            raw = sample.read_bytes()
            try:
                found = parse_message(raw)
            except UnreadableMessage:
                found = []
            except Exception as exc:
                wrong.append(f"{sample.name}: raised {type(exc).__name__}: {exc}")
                continue
            message = email.message_from_bytes(raw)
            if "message/feedback-report" not in _parts(message):
                complaints = [b.email for b in found if b.type == "complaint"]
                if complaints:
                    wrong.append(f"{sample.name}: a complaint for {complaints}")
            permanent = {_text(a) for a in scan_message(message)}
            if not permanent:
                continue
            compared += 1
            ours = {b.email.lower() for b in found if b.type in ("hard", "soft")}
            if ours & permanent:
                continue
            reasons = [
                r for r, applies in LEGITIMATE_DISAGREEMENT.items() if applies(message, permanent)
            ]
            if reasons:
                excused.setdefault(reasons[0], []).append(sample.name)
            else:
                wrong.append(
                    f"{sample.name}: flufl.bounce finds {sorted(permanent)}, we {sorted(ours)}"
                )
    assert not wrong, "\n".join(wrong)
    # Not a vacuous pass: flufl.bounce 6.0's samples hold 100 permanent bounces.
    assert compared >= min(50, len(samples) // 2), (compared, len(samples))
    assert sum(len(v) for v in excused.values()) <= compared // 10, excused
