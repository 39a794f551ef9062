"""Demo data so that a newcomer sees a working system: one contact per reason code."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import sqlalchemy as sa

from consent import services
from consent.claims import ExternalConfirmation
from consent.evidence import Evidence, form_wording, shown_version
from consent.ledger import record
from consent.models import ALL, Basis, EventKind, InterestKind
from consent.policies import wording_hash
from consent.topics import HOSTED_FORM_ID, current_policy
from crm.models import Contact
from crm.services import CompanyInput
from extensions import db
from kernel import access
from kernel.access import Actor
from kernel.models import Role, StaffUser
from kernel.timestamps import utcnow

DEMO_ACTOR = Actor(kind="cli", name="demo")
DEMO_PASSWORD = "demo-password-1"
# The example form on another site, registered in consent/default_policy.toml.
DEMO_FORM_ID = "website-footer"


@dataclass
class DemoSummary:
    contacts: int = 0
    users: list[tuple[str, str]] = field(default_factory=list)
    password: str | None = None


def _consent(topic: str) -> services.BasisInput:
    """A consent given on the example form registered in the policy file, with
    the evidence that form's post would have recorded (in Swedish, as the demo
    contacts are)."""
    policy = current_policy()
    # A policy file of one's own may not have the example form; every one has the hosted.
    form = policy.forms.get(DEMO_FORM_ID) or policy.form(HOSTED_FORM_ID)
    version = shown_version(form)
    signed_up = utcnow() - timedelta(days=30)
    return services.BasisInput(
        type=Basis.CONSENT,
        source="demo-form",
        topics=(topic,),
        obtained_at=signed_up,
        # The site ran the double opt-in itself (R7): its confirming event's evidence.
        confirmation=ExternalConfirmation(
            confirmed_at=signed_up + timedelta(minutes=12),
            ip_address="192.0.2.10",
            message_id=f"<confirm-{topic}@www.example.se>",
        ),
        evidence=Evidence(
            policy_version=version,
            wording_hash=wording_hash(form_wording(form, "sv", (topic,), version)),
            form_id=form.id,
            language="sv",
            page_url="https://www.example.se/",
            ip_address="192.0.2.10",
        ),
    )


CUSTOMER = services.BasisInput(
    type=Basis.LEGITIMATE_INTEREST, source="crm-sync", interest_kind=InterestKind.CUSTOMER
)
INDUSTRY = services.BasisInput(
    type=Basis.LEGITIMATE_INTEREST,
    source="industry-list-2026",
    interest_kind=InterestKind.INDUSTRY_LIST,
)
KUND_AB = CompanyInput(
    name="Kund AB", org_number="556000-0001", country="SE", customer_since=date(2020, 3, 1)
)


def load_demo(password: str | None = None) -> DemoSummary:
    """Idempotent: contacts and users that exist are left as they are."""
    summary = DemoSummary()
    password = password or DEMO_PASSWORD
    for role in Role:
        email = f"{role.value}@example.com"
        summary.users.append((email, role.value))
        if db.session.scalar(sa.select(StaffUser.id).where(StaffUser.email == email)) is None:
            access.create_staff_user(email, password, role.value, name=f"Demo {role.value}")
            summary.password = password

    if db.session.scalar(sa.select(Contact.id).where(Contact.email == "anna.kund@kund.example")):
        summary.contacts = 10
        return summary

    def contact(email: str, name: str, country: str, **kwargs: Any) -> Contact:
        summary.contacts += 1
        return services.register_contact(
            DEMO_ACTOR, email, {"name": name, "country": country, "language": "sv"}, **kwargs
        ).contact

    # As a CRM connector sends them: the contact's id in the CRM (docs/integration.md).
    contact(
        "anna.kund@kund.example",
        "Anna Kund",
        "SE",
        company=KUND_AB,
        basis=CUSTOMER,
        external_ids={"hubspot": "1001"},
    )
    contact(
        "bo.bransch@bransch.example",
        "Bo Bransch",
        "SE",
        basis=INDUSTRY,
        external_ids={"hubspot": "1002"},
    )
    contact("cecilia.nyhetsbrev@example.se", "Cecilia Samtycke", "SE", basis=_consent("newsletter"))
    pending = contact("dieter.wartet@example.de", "Dieter Wartet", "DE")
    if not _has_event(pending.id, EventKind.REQUESTED):
        record(
            pending,
            EventKind.REQUESTED,
            actor=DEMO_ACTOR,
            source="form",
            topic="newsletter",
            channel="email",
        )
    objected = contact(
        "erik.invander@kund.example", "Erik Invänder", "SE", company=KUND_AB, basis=CUSTOMER
    )
    if not _has_event(objected.id, EventKind.OBJECTED):
        services.record_objection(
            DEMO_ACTOR, objected.id, received_via="phone", note="Called and asked to stop."
        )
    suppressed = contact(
        "frida.sparrad@example.se", "Frida Spärrad", "SE", basis=_consent("newsletter")
    )
    if not _has_event(suppressed.id, EventKind.SUPPRESSED):
        # The ledger puts a "no" to everything on the suppression list itself (R22).
        record(suppressed, EventKind.UNSUBSCRIBED, actor=DEMO_ACTOR, source="email_link")
    restricted = contact(
        "gustav.begransad@kund.example", "Gustav Begränsad", "SE", company=KUND_AB, basis=CUSTOMER
    )
    if not _has_event(restricted.id, EventKind.RESTRICTED):
        record(
            restricted,
            EventKind.RESTRICTED,
            actor=DEMO_ACTOR,
            source="staff",
            note="Disputes accuracy (art. 18)",
        )
    bounced = contact(
        "hanna.studsar@kund.example", "Hanna Studsar", "SE", company=KUND_AB, basis=CUSTOMER
    )
    if not _has_event(bounced.id, EventKind.UNDELIVERABLE):
        record(
            bounced,
            EventKind.UNDELIVERABLE,
            actor=DEMO_ACTOR,
            source="system",
            note="550 5.1.1 user unknown",
        )
    unsubscribed = contact(
        "ingrid.avregistrerad@example.se",
        "Ingrid Avregistrerad",
        "SE",
        basis=_consent("newsletter"),
    )
    if not _has_event(unsubscribed.id, EventKind.UNSUBSCRIBED):
        record(
            unsubscribed,
            EventKind.UNSUBSCRIBED,
            actor=DEMO_ACTOR,
            source="email_link",
            topic="newsletter",
            channel="email",
        )
    contact("jonas.utanbas@example.de", "Jonas Utan Bas", "DE")
    db.session.commit()
    return summary


def _has_event(contact_id: int, kind: EventKind) -> bool:
    from consent.models import ConsentEvent

    return (
        db.session.scalar(
            sa.select(ConsentEvent.id).where(
                ConsentEvent.contact_id == contact_id, ConsentEvent.kind == kind.value
            )
        )
        is not None
    )


__all__ = ["ALL", "load_demo"]
