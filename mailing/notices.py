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
from mailing.models import OutboxMessage
from mailing.outbox import insert_and_hand_over, transactional_row

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
            transactional_row(key, cid, TEMPLATE, lang, params, now)
            for key, (cid, lang) in keys.items()
            if key not in existing
        ]
        queued += insert_and_hand_over(rows)
    return queued
