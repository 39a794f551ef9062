"""R24: a major policy version is mailed to every registered address, in its language."""

from __future__ import annotations

import sqlalchemy as sa

from tests.mailing.conftest import text_of


def _contacts(admin_api) -> None:  # type: ignore[no-untyped-def]
    customer = {"type": "legitimate_interest", "kind": "customer", "source": "crm"}
    admin_api.post(
        "/api/v1/contacts",
        json={"email": "kund@kund.se", "language": "sv", "country": "SE", "basis": customer},
    )
    objected = admin_api.post(
        "/api/v1/contacts", json={"email": "nej@kund.se", "language": "en", "country": "SE"}
    ).json["id"]
    admin_api.post(f"/api/v1/contacts/{objected}/objection", json={"received_via": "phone"})
    admin_api.post(
        "/api/v1/contacts", json={"email": "none@example.de", "language": "de", "country": "DE"}
    )


def test_major_version_notice_reaches_every_address_once_in_its_language(
    app, admin_api, smtp, mail_worker
) -> None:
    _contacts(admin_api)
    published = admin_api.post(
        "/api/v1/policies",
        json={"version": "2.0", "major": True, "url": "https://example.com/privacy/2.0"},
    )
    assert published.status_code == 201, published.json
    mail_worker.drain()
    received = smtp.wait_for(3)
    by_address = {str(m["To"]).split("<")[-1].rstrip(">"): m for m in received}
    # Everyone, including a person who objected to marketing: this is not marketing.
    assert set(by_address) == {"kund@kund.se", "nej@kund.se", "none@example.de"}
    assert "integritetspolicy" in by_address["kund@kund.se"]["Subject"]
    assert "privacy policy" in by_address["nej@kund.se"]["Subject"]
    assert "privacy policy" in by_address["none@example.de"]["Subject"]  # no German texts: English
    for message in received:
        assert "List-Unsubscribe" not in message
        assert "https://example.com/privacy/2.0" in text_of(message)

    # Running the queuing again sends nothing twice.
    with app.app_context():
        from consent.models import PolicyVersion
        from extensions import db
        from mailing.notices import queue_policy_notices

        version_id = db.session.scalar(
            sa.select(PolicyVersion.id).where(PolicyVersion.version == "2.0")
        )
        assert queue_policy_notices(version_id) == 0
    mail_worker.drain()
    assert len(smtp.messages) == 3


def test_minor_version_sends_no_notice(app, admin_api, smtp, mail_worker) -> None:
    _contacts(admin_api)
    assert (
        admin_api.post(
            "/api/v1/policies",
            json={"version": "1.1", "major": False, "url": "https://example.com/privacy/1.1"},
        ).status_code
        == 201
    )
    mail_worker.drain()
    with app.app_context():
        from extensions import db
        from mailing.models import OutboxMessage

        assert (
            db.session.scalar(
                sa.select(sa.func.count())
                .select_from(OutboxMessage)
                .where(OutboxMessage.template == "policy_notice")
            )
            == 0
        )
    assert smtp.messages == []
