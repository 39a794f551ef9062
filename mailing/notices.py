"""Policy-change notices (R24): on a major privacy-policy version, every
registered address gets a transactional notice in its language.

Every contact, not only those with marketing permission: the notice is
information the company owes, not marketing, so it carries no unsubscribe
link and the policy is not asked. Queued in chunks with one idempotency key
per version and contact, so a repeated run adds nothing.
"""

from __future__ import annotations

from collections.abc import Iterator

import sqlalchemy as sa

from consent.models import PolicyVersion
from crm.models import Contact
from extensions import db
from kernel.errors import NotFound
from kernel.timestamps import utcnow
from mailing import messages
from mailing.models import MailKind, MailStatus, OutboxMessage
from mailing.outbox import hand_over

TEMPLATE = "policy_notice"
CHUNK = 1_000


def notice_key(version: str, contact_id: int) -> str:
    return f"policy-notice:{version}:contact:{contact_id}"


def _contact_chunks() -> Iterator[list[tuple[int, str]]]:
    last_id = 0
    while True:
        rows = db.session.execute(
            sa.select(Contact.id, Contact.language)
            .where(Contact.id > last_id)
            .order_by(Contact.id)
            .limit(CHUNK)
        ).all()
        if not rows:
            return
        yield [(r.id, r.language) for r in rows]
        last_id = rows[-1].id


def queue_policy_notices(policy_version_id: int) -> int:
    """Queue the notice of one policy version to every contact. Returns how many were new."""
    policy = db.session.get(PolicyVersion, policy_version_id)
    if policy is None:
        raise NotFound(f"No policy version {policy_version_id}.", code="policy_not_found")
    params = {"version": policy.version, "url": policy.url}
    queued = 0
    for chunk in _contact_chunks():
        keys = {notice_key(policy.version, cid): (cid, lang) for cid, lang in chunk}
        existing = set(
            db.session.scalars(
                sa.select(OutboxMessage.idempotency_key).where(
                    OutboxMessage.idempotency_key.in_(keys)
                )
            )
        )
        now = utcnow()
        rows = [
            {
                "idempotency_key": key,
                "kind": MailKind.TRANSACTIONAL.value,
                "contact_id": cid,
                "template": TEMPLATE,
                "language": messages.page_language(lang),
                "params": params,
                "status": MailStatus.QUEUED.value,
                "attempts": 0,
                "message_id": messages.message_id_for(key),
                "created_at": now,
            }
            for key, (cid, lang) in keys.items()
            if key not in existing
        ]
        if not rows:
            continue
        db.session.execute(sa.insert(OutboxMessage), rows)
        ids = list(
            db.session.scalars(
                sa.select(OutboxMessage.id).where(
                    OutboxMessage.idempotency_key.in_([r["idempotency_key"] for r in rows])
                )
            )
        )
        db.session.commit()
        hand_over(ids)
        queued += len(ids)
    return queued
