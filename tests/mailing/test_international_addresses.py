"""Addresses with letters outside ASCII before the @-sign (RFC 6531), such as
``jörgen@firma.se``: accepted by the forms, so they must be mailable, through
a server that offers SMTPUTF8, and refused once with a clear reason by one
that does not."""

from __future__ import annotations

import email
import email.policy
from collections.abc import Iterator
from typing import Any

import pytest

from extensions import db
from kernel.access import Actor
from mailing import campaigns
from mailing.campaigns import CampaignInput
from tests.mailing.conftest import SmtpSink, link, serve, text_of
from tests.mailing.helpers import consented_contacts, contact_id_of, decision, outbox, signup

ADDRESS = "jörgen@firma.se"
STAFF = Actor(kind="user", name="marketer@example.com", role="marketing")


@pytest.fixture
def plain_smtp(app: Any) -> Iterator[SmtpSink]:
    """A server whose EHLO does not offer SMTPUTF8."""
    yield from serve(app, SmtpSink(smtputf8=False))


def test_a_person_with_such_an_address_gets_the_confirmation_and_can_confirm(
    app, client, admin_api, smtp, mail_worker
) -> None:
    assert signup(client, ADDRESS, name="Jörgen Åberg").status_code == 200
    mail_worker.drain()

    [confirmation] = smtp.wait_for(1)
    assert smtp.recipients == [ADDRESS]
    [to] = confirmation["To"].addresses
    # No name: the address has not proved to be Jörgen's yet.
    assert (to.addr_spec, to.display_name) == (ADDRESS, "")
    # In UTF-8, as RFC 6532 has it; an RFC 2047 encoded word is not allowed in
    # an address and would name another mailbox.
    assert ADDRESS.encode() in smtp.raw[0] and b"=?utf-8?q?j=C3=B6rgen?=" not in smtp.raw[0]

    assert client.post(link(confirmation, "/confirm/")).status_code == 200
    contact_id = contact_id_of(app, ADDRESS)
    assert decision(admin_api, contact_id, "newsletter")["reason"] == "consent"
    mail_worker.drain()
    [_, welcome] = smtp.wait_for(2)
    [to] = welcome["To"].addresses
    assert (to.addr_spec, to.display_name) == (ADDRESS, "Jörgen Åberg")
    assert ADDRESS.encode() in smtp.raw[1]


def test_a_campaign_reaches_such_an_address_and_its_unsubscribe_link_works(
    app, client, admin_api, smtp, mail_worker
) -> None:
    people = [(ADDRESS, "Jörgen Åberg"), ("anna@firma.se", "Anna"), ("bo@företag.se", "Bo")]
    ids = consented_contacts(app, [(address, name, "sv") for address, name in people])
    with app.app_context():
        texts = CampaignInput(
            topic="newsletter",
            subject_sv="Nyheter",
            body_sv="Hej! Här är nyheterna.",
            subject_en="News",
            body_en="Hello! Here is the news.",
        )
        campaign_id = campaigns.create_campaign(STAFF, texts).id
        campaigns.send_campaign(STAFF, campaign_id)
        db.session.remove()
    mail_worker.drain()

    smtp.wait_for(3)
    # A domain outside ASCII travels in its IDNA form, in the prepared message too.
    assert sorted(smtp.recipients) == sorted([ADDRESS, "anna@firma.se", "bo@xn--fretag-wxa.se"])
    [message] = [m for m in smtp.messages if m["To"].addresses[0].addr_spec == ADDRESS]
    assert message["Subject"] == "Nyheter" and "Här är nyheterna." in text_of(message)
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"

    one_click = message["List-Unsubscribe"].split(",")[0].strip("<> ")
    answer = client.post(
        one_click.removeprefix("http://localhost"), data={"List-Unsubscribe": "One-Click"}
    )
    assert answer.status_code == 200
    assert decision(admin_api, ids[0], "newsletter")["allowed"] is False
    assert decision(admin_api, ids[1], "newsletter")["allowed"] is True


def test_a_server_without_smtputf8_fails_the_message_once_with_the_reason(
    app, client, plain_smtp, mail_worker
) -> None:
    signup(client, ADDRESS)
    signup(client, "anna@firma.se")
    mail_worker.drain()

    rows = {row.contact_id: row for row in outbox(app)}
    failed = rows[contact_id_of(app, ADDRESS)]
    assert (failed.status, failed.attempts) == ("failed", 1)
    assert "SMTPUTF8" in (failed.last_error or "")
    # The same server still takes every ASCII address.
    assert rows[contact_id_of(app, "anna@firma.se")].status == "sent"
    assert plain_smtp.recipients == ["anna@firma.se"]


def test_a_domain_outside_ascii_needs_no_smtputf8(app, client, plain_smtp, mail_worker) -> None:
    signup(client, "anna@företag.se")
    mail_worker.drain()

    [confirmation] = plain_smtp.wait_for(1)
    assert plain_smtp.recipients == ["anna@xn--fretag-wxa.se"]
    assert confirmation["To"].addresses[0].addr_spec == "anna@xn--fretag-wxa.se"
    assert contact_id_of(app, "anna@företag.se") is not None  # stored as written


def test_without_smtp_the_file_holds_the_address_as_written(
    app, client, mail_worker, tmp_path
) -> None:
    previous = app.config["MAIL_FOLDER"]
    app.config.update(SMTP_URL=None, MAIL_FOLDER=str(tmp_path))
    try:
        signup(client, ADDRESS)
        mail_worker.drain()
        [eml] = list(tmp_path.glob("*.eml"))
    finally:
        app.config.update(MAIL_FOLDER=previous)
    # As a mail program that reads RFC 6532 opens it.
    head = eml.read_bytes().split(b"\r\n\r\n", 1)[0].decode("utf-8")
    message = email.message_from_string(head, policy=email.policy.default)
    assert message["To"].addresses[0].addr_spec == ADDRESS
    # And the development mail page shows it.
    app.config.update(CONSENT_ENV="development", MAIL_FOLDER=str(tmp_path))
    try:
        shown = client.get(f"/dev/mail/{eml.name}")
    finally:
        app.config.update(CONSENT_ENV="testing", MAIL_FOLDER=previous)
    assert shown.status_code == 200 and ADDRESS in shown.get_data(as_text=True)
