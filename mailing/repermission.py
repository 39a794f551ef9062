"""Re-permission after a major privacy-policy version (R23, R24).

A consent given under an older version stays valid: the person agreed to what
they were shown, and a new version neither voids nor renews that agreement
(docs/rules.md R24). What the company may do is ask: each contact whose
email consent rests on a version older than the latest major one gets one
request to confirm under the new version. The request goes through the double
opt-in machinery (``consent.subscriptions.request_topics`` and the signed
confirmation link), so only the person's click records consent, under the new
version and the hash of the sentence the email showed. A person who does not
click keeps the consent they had.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from consent import services, subscriptions
from consent.evidence import repermission_evidence, repermission_wording
from consent.policies import latest_major_version
from crm import services as crm
from extensions import db
from kernel.access import Actor
from kernel.errors import N_, Conflict
from kernel.timestamps import utcnow
from mailing import messages
from mailing.models import MailKind, OutboxMessage
from mailing.outbox import hand_over, queue_email

TEMPLATE = "repermission"
# Contacts per transaction and hand-over.
CHUNK = 500


def repermission_key(version: str, contact_id: int) -> str:
    return f"repermission:{version}:contact:{contact_id}"


@dataclass(frozen=True)
class RepermissionOutlook:
    """Who a re-permission request would go to now: the latest major version and,
    per contact, the topics whose consent was given under an older version."""

    version: str | None
    targets: dict[int, list[str]]

    @property
    def contacts(self) -> int:
        return len(self.targets)


def outlook(at: datetime | None = None) -> RepermissionOutlook:
    major = latest_major_version()
    if major is None:
        return RepermissionOutlook(None, {})
    return RepermissionOutlook(major.version, services.older_consents(at))


def send_repermission(actor: Actor, at: datetime | None = None) -> int:
    """Queue one re-permission email to every contact marked by the latest major
    version; returns how many were queued. Running it again queues nobody twice
    (one idempotency key per version and contact).

    Transactional in kind: it asks for consent and carries no marketing, like
    the first confirmation email; the policy is not asked before it leaves.
    """
    now = at or utcnow()
    major = latest_major_version()
    if major is None:
        raise Conflict(
            N_("No major policy version is published; there is nothing to ask consent again for."),
            code="no_major_version",
        )
    targets = services.older_consents(now)
    queued: list[int] = []
    contact_ids = sorted(targets)
    for start in range(0, len(contact_ids), CHUNK):
        chunk_ids: list[int] = []
        for contact_id in contact_ids[start : start + CHUNK]:
            key = repermission_key(major.version, contact_id)
            if db.session.scalar(
                sa.select(OutboxMessage.id).where(OutboxMessage.idempotency_key == key)
            ):
                continue
            contact = crm.get_contact(contact_id)
            topics = targets[contact_id]
            language = messages.page_language(contact.language)
            request = subscriptions.request_topics(
                contact,
                topics,
                "repermission",
                repermission_evidence(language, topics, major.version),
                now,
                actor=actor,
            )
            if request is None:  # restricted (GDPR art. 18): no yes can be taken
                continue
            row = queue_email(
                contact,
                kind=MailKind.TRANSACTIONAL,
                template=TEMPLATE,
                idempotency_key=key,
                params={
                    "request_id": request.id,
                    "version": major.version,
                    "url": major.url,
                    "topics": topics,
                    "wording": repermission_wording(language, topics, major.version),
                },
                at=now,
            )
            chunk_ids.append(row.id)
        db.session.commit()
        hand_over(chunk_ids)
        queued.extend(chunk_ids)
    crm.audit(
        actor, "repermission.send", None, detail=f"version={major.version} queued={len(queued)}"
    )
    db.session.commit()
    return len(queued)
