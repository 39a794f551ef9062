"""R19: web visits are linked to a contact only with the contact's explicit consent.

The consent is an ordinary consent in the ledger, to the consent-only topic
the policy file names (``[web_tracking] topic``, ``web-tracking`` by
default): given in the website's cookie banner and sent through the API with
its evidence, like any other consent (R5, R23). Whether it holds is asked of
THE decision (``consent.policy``), so an objection (R11: no profiling), an
unsubscribe from all marketing or a restriction ends it as they end
marketing. Without it a visitor id (pseudonymous: a cookie's value, personal
data, but tied to no contact) stays unlinked: ``link_visitor`` refuses
(409), a link covers only the visits made since the consent began, a
withdrawal unlinks at once, a decision that changed to "no" unlinks
after its commit (``decisions_changed``), and the daily run checks every link
again and deletes visits older than the policy's period (R18).
"""

from __future__ import annotations

import logging
from datetime import datetime

from consent.models import Basis, EventKind
from consent.services import check_permissions, note_withdrawal
from consent.topics import current_policy
from crm import services as crm
from crm import web_visits
from crm.models import Contact, WebVisit, WebVisitorLink
from extensions import db
from kernel.access import Actor
from kernel.errors import Conflict
from kernel.signals import decisions_changed
from kernel.signals import sender as signal_sender
from kernel.timestamps import utcnow

log = logging.getLogger(__name__)

# The web-tracking consent is asked on the email channel, the API's default
# ``basis.channel`` for a consent (docs/rules.md R19, gaps).
CHANNEL = "email"
CHUNK = 1_000


def tracking_topic() -> str:
    """The consent-only topic of web tracking; Conflict when the policy has none."""
    topic = current_policy().web_tracking_topic
    if topic is None:
        raise Conflict(
            "This service links no web visits to contacts: the policy file names "
            "no [web_tracking] topic.",
            code="web_tracking_off",
        )
    return topic


def may_link(emails: list[str], at: datetime | None = None) -> list[bool]:
    """Per address, whether its contact's consent to web tracking holds now."""
    topic = tracking_topic()
    return [
        d.allowed and d.basis is Basis.CONSENT
        for d in check_permissions(emails, topic, CHANNEL, at=at)
    ]


def consent_began(contact: Contact) -> datetime | None:
    """When the contact's web-tracking consent that holds now began; None when
    none holds (or the policy tracks no visits)."""
    topic = current_policy().web_tracking_topic
    if topic is None:
        return None
    decision = check_permissions([contact.email], topic, CHANNEL)[0]
    return decision.since if decision.allowed and decision.basis is Basis.CONSENT else None


def read_visits(actor: Actor, contact_id: int) -> list[WebVisit]:
    """The visits linked to the contact since its consent began (audited, R25)."""
    return web_visits.read_visits(actor, contact_id, consent_began(crm.get_contact(contact_id)))


def link_visitor(actor: Actor, visitor_id: str, contact_id: int) -> WebVisitorLink:
    """Tie a pseudonymous visitor id to a contact: only while the contact's explicit
    consent to web tracking holds (R19; ePrivacy art. 5(3), GDPR art. 6(1)(a)).
    Conflict ``no_web_tracking_consent`` otherwise, with nothing written. Only
    the id's visits made since the consent began are the contact's
    (``read_visits``, the export); earlier ones stay unlinked."""
    topic = tracking_topic()
    # The row lock every consent change takes first (consent.ledger.record): a
    # withdrawal either committed before this check or waits for this link, and
    # then unlinks it after its own commit.
    held = crm.hold_contact(contact_id)
    decision = check_permissions([held.email], topic, CHANNEL)[0]
    if not (decision.allowed and decision.basis is Basis.CONSENT):
        db.session.rollback()
        raise Conflict(
            "The contact has not consented to having web visits linked to them "
            f"({decision.reason.value}); the visits stay anonymous.",
            code="no_web_tracking_consent",
        )
    link = web_visits.set_link(visitor_id, contact_id, actor)
    crm.audit(actor, "web_visitor.link", contact_id)
    db.session.commit()
    return link


def withdraw(actor: Actor, contact_id: int, received_via: str = "web") -> int:
    """The contact withdrew the web-tracking consent (GDPR art. 7(3)): recorded
    as every withdrawal is (``consent.services.note_withdrawal``: never refused,
    on every channel, with how it was received), and every visitor id is
    unlinked in the same commit. Returns how many links went."""
    topic = tracking_topic()
    note_withdrawal(actor, contact_id, topic=topic, received_via=received_via)
    unlinked = web_visits.unlink_contacts([contact_id])
    crm.audit(actor, "web_tracking.withdraw", contact_id, detail=f"unlinked={unlinked}")
    db.session.commit()
    decisions_changed.send(signal_sender(), contact_id=contact_id, kind=EventKind.WITHDRAWN.value)
    return unlinked


def unlink_if_no_consent(contact_id: int) -> int:
    """After a change to a contact's decisions: its visitors stay linked only if
    the consent still holds. Commits; returns how many links went."""
    if current_policy().web_tracking_topic is None or not web_visits.has_links(contact_id):
        return 0
    contact = db.session.get(Contact, contact_id)
    if contact is not None and may_link([contact.email])[0]:
        return 0
    unlinked = web_visits.unlink_contacts([contact_id])
    db.session.commit()
    return unlinked


def enforce_daily(at: datetime | None = None) -> tuple[int, int]:
    """The daily check: unlink every contact whose consent no longer holds (a
    change no signal announced, such as a set-based import) and delete visits
    older than the policy's period (R18). Returns (links removed, visits deleted)."""
    now = at or utcnow()
    policy = current_policy()
    unlinked = 0
    if policy.web_tracking_topic is not None:
        ids = web_visits.linked_contact_ids()
        for start in range(0, len(ids), CHUNK):
            rows = db.session.execute(
                db.select(Contact.id, Contact.email).where(
                    Contact.id.in_(ids[start : start + CHUNK])
                )
            ).all()
            allowed = may_link([r.email for r in rows], at=now)
            ended = [r.id for r, ok in zip(rows, allowed, strict=True) if not ok]
            unlinked += web_visits.unlink_contacts(ended)
            db.session.commit()
    deleted = web_visits.purge_visits(now - policy.web_visits_kept)
    if unlinked or deleted:
        log.info("Web visits: %d link(s) removed, %d visit(s) deleted", unlinked, deleted)
    return unlinked, deleted


def connect_signals() -> None:
    from kernel.signals import collect_export_sections, day_started

    decisions_changed.connect(_on_decisions_changed, weak=False)
    day_started.connect(_on_day_started, weak=False)
    collect_export_sections.connect(_export_web_visits, weak=False)


def _export_web_visits(app: object, *, contact: Contact, **_: object) -> tuple[str, object]:
    """The visits linked to the person, as a section of their export (GDPR art. 15)."""
    return "web_visits", [
        {"visitor_id": v.visitor_id, "page": v.page, "visited_at": v.visited_at.isoformat()}
        for v in web_visits.visits_of(contact.id, consent_began(contact))
    ]


def _on_decisions_changed(
    app: object,
    *,
    contact_id: int | None = None,
    contact_ids: tuple[int, ...] = (),
    **_: object,
) -> None:
    """After the commit of any change to a contact's decisions (an objection, an
    unsubscribe, a restriction): no link outlives the consent. An import
    announces a whole batch at once (``contact_ids``): one query finds those of
    its contacts that have links at all."""
    if contact_id is not None:
        unlink_if_no_consent(contact_id)
    if contact_ids:
        unlink_many_if_no_consent(contact_ids)


def unlink_many_if_no_consent(contact_ids: tuple[int, ...]) -> int:
    """``unlink_if_no_consent`` for many contacts, a thousand at a time: one
    query for those that have links, one decision per linked address. Commits
    when it unlinked any; returns how many links went."""
    if current_policy().web_tracking_topic is None:
        return 0
    unlinked = 0
    for start in range(0, len(contact_ids), CHUNK):
        linked = web_visits.linked_among(list(contact_ids[start : start + CHUNK]))
        if not linked:
            continue
        rows = db.session.execute(
            db.select(Contact.id, Contact.email).where(Contact.id.in_(linked))
        ).all()
        allowed = may_link([r.email for r in rows])
        ended = [r.id for r, ok in zip(rows, allowed, strict=True) if not ok]
        if ended:
            unlinked += web_visits.unlink_contacts(ended)
            db.session.commit()
    return unlinked


def _on_day_started(app: object, **_: object) -> None:
    enforce_daily()
