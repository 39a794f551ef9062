"""docs/rules.md X15: the GDPR art. 14 notice as its own email, within a month.

A contact whose address came from someone else (an industry list, a customer
company) hears where it came from without waiting for a campaign: the daily
job of the scheduler or ``flask notices art14`` queues the notice, the real worker sends it
through the real SMTP server, and the contact records when it was given.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from crm.models import AuditEntry, Contact
from extensions import db
from kernel.access import Actor, Role
from kernel.timestamps import utcnow
from mailing import campaigns
from mailing.campaigns import CampaignInput
from tests.mailing.conftest import text_of
from tests.staff.helpers import client_as

POLICY_URL = "https://example.com/privacy/3.1"
SOURCE = "Branschregistret 2026"
STAFF = Actor(kind="user", name="marketing@example.com", role=Role.MARKETING)
LIST = (
    "email,name,company,organisation number,country,language\n"
    "lista@bransch.se,Lisa,Bransch AB,,SE,sv\n"
    "liste@branche.de,Lieselotte,Branche GmbH,,DE,en\n"
)


def _publish_policy(admin_api: Any) -> None:
    published = admin_api.post(
        "/api/v1/policies", json={"version": "3.1", "major": False, "url": POLICY_URL}
    )
    assert published.status_code == 201, published.json


def _import_list(app: Any, tmp_path: Path) -> None:
    path = tmp_path / "list.csv"
    path.write_text(LIST, encoding="utf-8")
    result = app.test_cli_runner().invoke(
        args=["contacts", "import", str(path), "--basis", "industry_list", "--source", SOURCE]
    )
    assert result.exit_code == 0, result.output


def _queue_now(app: Any) -> int:
    result = app.test_cli_runner().invoke(args=["notices", "art14", "--json"])
    assert result.exit_code == 0, result.output
    return int(json.loads(result.output)["queued"])


def _contact(app: Any, email: str) -> Contact:
    with app.app_context():
        contact = db.session.scalar(sa.select(Contact).where(Contact.email == email))
        assert contact is not None
        db.session.expunge(contact)
        return contact


def test_an_imported_list_gets_the_notice_naming_its_source_and_linking_the_policy(
    app, admin_api, tmp_path, mail_worker, smtp
) -> None:
    """No campaign needed: the notice goes on its own, names the import's source
    and links the privacy policy; it is transactional (no unsubscribe headers)."""
    _publish_policy(admin_api)
    _import_list(app, tmp_path)
    assert _queue_now(app) == 2
    mail_worker.drain()
    (message,) = smtp.to("lista@bransch.se")
    text = text_of(message)
    assert f'branschlistan "{SOURCE}"' in text
    assert POLICY_URL in text
    assert "one of our marketing partners" not in text and "marknadspartner" not in text
    assert "List-Unsubscribe" not in message
    assert "/unsubscribe/" in text  # art. 21(4): a way to object, in the notice itself


def test_the_notice_is_recorded_on_the_contact_and_in_the_audit_log(
    app, admin_api, tmp_path, mail_worker, smtp
) -> None:
    _import_list(app, tmp_path)
    _queue_now(app)
    mail_worker.drain()
    contact = _contact(app, "lista@bransch.se")
    assert contact.art14_notice_owed_since is None
    assert contact.art14_notice_given_at is not None
    with app.app_context():
        actions = db.session.scalars(
            sa.select(AuditEntry.detail).where(
                AuditEntry.contact_id == contact.id,
                AuditEntry.action == "contact.art14_notice_given",
            )
        ).all()
    assert actions == ["source_notice"]
    page = client_as(app, "sales").get(f"/staff/contacts/{contact.id}")
    assert page.status_code == 200
    assert 'class="art14-notice"' in page.get_data(as_text=True)


def test_running_it_again_sends_nothing_more(app, admin_api, tmp_path, mail_worker, smtp) -> None:
    _import_list(app, tmp_path)
    assert _queue_now(app) == 2
    mail_worker.drain()
    assert _queue_now(app) == 0
    mail_worker.drain()
    assert len(smtp.messages) == 2


def test_a_contact_where_email_marketing_needs_consent_still_gets_the_notice(
    app, admin_api, tmp_path, mail_worker, smtp
) -> None:
    """DE admits no marketing on legitimate interest here, but the notice is not marketing."""
    _import_list(app, tmp_path)
    listed = admin_api.post(
        "/api/v1/permissions/check", json={"emails": ["liste@branche.de"], "topic": "events"}
    ).json["decisions"][0]
    assert listed["allowed"] is False
    _queue_now(app)
    mail_worker.drain()
    (message,) = smtp.to("liste@branche.de")
    assert f'industry list "{SOURCE}"' in text_of(message)
    assert _contact(app, "liste@branche.de").art14_notice_given_at is not None


def test_the_schedulers_daily_turn_queues_the_notice(
    app, admin_api, tmp_path, mail_worker, smtp
) -> None:
    """The scheduler's art. 14 job (kernel.scheduling) reaches the worker; mailing queues what is owed."""
    from kernel.scheduling import periodic_jobs, run_turn

    (job,) = [j for j in periodic_jobs(app) if j.name == "art14-notices"]
    _import_list(app, tmp_path)
    with app.app_context():
        assert run_turn(job)
        db.session.remove()
    mail_worker.drain()
    assert {str(m["To"]).split("<")[-1].rstrip(">") for m in smtp.messages} == {
        "lista@bransch.se",
        "liste@branche.de",
    }


def test_a_campaign_after_the_notice_does_not_repeat_it(
    app, admin_api, tmp_path, mail_worker, smtp
) -> None:
    _import_list(app, tmp_path)
    _queue_now(app)
    mail_worker.drain()
    events = CampaignInput(
        topic="events", subject_sv="Mässa", body_sv="Välkommen!", subject_en="Fair", body_en="Hi"
    )
    with app.app_context():
        campaign = campaigns.create_campaign(STAFF, events)
        campaigns.send_campaign(STAFF, campaign.id)
        db.session.remove()
    mail_worker.drain()
    later = smtp.to("lista@bransch.se")[-1]
    assert later["Subject"] == "Mässa"
    assert "Var vi fick din adress" not in text_of(later)


def test_a_campaign_first_carries_it_and_a_notice_queued_before_is_then_not_sent(
    app, admin_api, tmp_path, mail_worker, smtp
) -> None:
    """Art. 14(3)(b): the first email, if earlier, carries the notice; a notice
    row queued before it but delivered after is blocked, not sent twice."""
    from mailing.delivery import deliver
    from mailing.models import MailKind
    from mailing.outbox import queue_email

    _import_list(app, tmp_path)
    with app.app_context():
        contact = db.session.scalar(sa.select(Contact).where(Contact.email == "lista@bransch.se"))
        assert contact is not None
        row = queue_email(
            contact,
            kind=MailKind.TRANSACTIONAL,
            template="source_notice",
            idempotency_key=f"art14-notice:contact:{contact.id}",
            params={"kind": "industry_list", "source": SOURCE},
        )
        notice_id = row.id
        db.session.commit()  # queued, not yet handed to a worker
        campaign = campaigns.create_campaign(
            STAFF,
            CampaignInput(
                topic="events",
                subject_sv="Mässa",
                body_sv="Välkommen!",
                subject_en="Fair",
                body_en="Hi",
            ),
        )
        campaigns.send_campaign(STAFF, campaign.id)
        db.session.remove()
    mail_worker.drain()
    (first,) = smtp.to("lista@bransch.se")
    assert first["Subject"] == "Mässa" and SOURCE in text_of(first)
    with app.app_context():
        outcome = deliver(notice_id)
        db.session.remove()
    assert (outcome.status, outcome.reason) == ("blocked", "notice_already_given")
    assert len(smtp.to("lista@bransch.se")) == 1
    assert _contact(app, "lista@bransch.se").art14_notice_given_at is not None


def test_a_customer_contact_from_the_api_is_told_its_employer_and_the_callers_source(
    app, admin_api, mail_worker, smtp
) -> None:
    customer = {"type": "legitimate_interest", "kind": "customer", "source": "crm-sync"}
    created = admin_api.post(
        "/api/v1/contacts",
        json={
            "email": "kund@kundab.se",
            "language": "en",
            "country": "SE",
            "company": {"name": "Kund AB", "customer_since": "2020-01-01"},
            "basis": customer,
        },
    )
    assert created.status_code in (200, 201), created.json
    with app.app_context():
        from mailing.art14_notices import queue_art14_notices

        assert queue_art14_notices(at=utcnow() + timedelta(days=1)) == 1
        db.session.remove()
    mail_worker.drain()
    (message,) = smtp.to("kund@kundab.se")
    text = text_of(message)
    assert "your employer, Kund AB, which is our customer" in text
    assert '"crm-sync"' in text


def test_an_erased_contact_gets_no_notice(app, admin_api, tmp_path, mail_worker, smtp) -> None:
    _import_list(app, tmp_path)
    contact = _contact(app, "lista@bransch.se")
    assert admin_api.delete(f"/api/v1/contacts/{contact.id}").status_code in (200, 204)
    _queue_now(app)
    mail_worker.drain()
    assert smtp.to("lista@bransch.se") == []


def test_a_repeated_sync_of_a_customer_contact_records_the_callers_grant_once(
    app, admin_api
) -> None:
    customer = {"type": "legitimate_interest", "kind": "customer", "source": "crm-sync"}
    body = {
        "email": "kund@kundab.se",
        "company": {"name": "Kund AB", "customer_since": "2020-01-01"},
        "basis": customer,
    }
    for _ in range(2):
        assert admin_api.post("/api/v1/contacts", json=body).status_code in (200, 201)
    with app.app_context():
        from consent.models import ConsentEvent

        sources = db.session.scalars(
            sa.select(ConsentEvent.source).where(ConsentEvent.kind == "basis_granted")
        ).all()
        db.session.remove()
    assert sorted(sources) == ["company", "crm-sync"]


def test_a_contact_created_at_a_customer_company_without_a_basis_gets_the_notice(
    app, admin_api, mail_worker, smtp
) -> None:
    """The company's basis (consent.bases) came from the employer, not the person."""
    created = admin_api.post(
        "/api/v1/contacts",
        json={
            "email": "ny@kundab.se",
            "language": "en",
            "company": {"name": "Kund AB", "customer_since": "2020-01-01"},
        },
    )
    assert created.status_code in (200, 201), created.json
    assert _contact(app, "ny@kundab.se").art14_notice_owed_since is not None
    assert _queue_now(app) == 1
    mail_worker.drain()
    (message,) = smtp.to("ny@kundab.se")
    assert "your employer, Kund AB, which is our customer" in text_of(message)


def test_a_contact_who_joins_a_customer_company_after_its_notice_is_not_owed_another(
    app, admin_api, mail_worker, smtp
) -> None:
    body = {
        "email": "flytt@kundab.se",
        "company": {"name": "Kund AB", "customer_since": "2020-01-01"},
    }
    assert admin_api.post("/api/v1/contacts", json=body).status_code in (200, 201)
    assert _queue_now(app) == 1
    mail_worker.drain()
    contact = _contact(app, "flytt@kundab.se")
    assert contact.art14_notice_given_at is not None
    for company in ({"name": "Annat AB"}, {"name": "Tredje AB", "customer_since": "2021-01-01"}):
        moved = admin_api.patch(f"/api/v1/contacts/{contact.id}", json={"company": company})
        assert moved.status_code == 200, moved.json
    assert _contact(app, "flytt@kundab.se").art14_notice_owed_since is None
    assert _queue_now(app) == 0


def test_a_contact_who_joins_a_customer_company_is_owed_the_notice(app, admin_api) -> None:
    body = {"email": "byte@annat.se", "company": {"name": "Annat AB"}}
    assert admin_api.post("/api/v1/contacts", json=body).status_code in (200, 201)
    contact = _contact(app, "byte@annat.se")
    assert contact.art14_notice_owed_since is None
    moved = admin_api.patch(
        f"/api/v1/contacts/{contact.id}",
        json={"company": {"name": "Kund AB", "customer_since": "2020-01-01"}},
    )
    assert moved.status_code == 200, moved.json
    assert _contact(app, "byte@annat.se").art14_notice_owed_since is not None
