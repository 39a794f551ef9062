"""record_many folds a batch of events exactly as record folds them one by one."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

SEQUENCES = [
    [("basis_granted", {"interest_kind": "customer"})],
    [
        ("basis_granted", {"interest_kind": "industry_list"}),
        ("basis_ended", {"interest_kind": "industry_list"}),
    ],
    [
        ("requested", {"topic": "newsletter", "channel": "email"}),
        ("confirmed", {"topic": "newsletter", "channel": "email"}),
    ],
    [("unsubscribed", {}), ("confirmed", {"topic": "newsletter", "channel": "email"})],
    [("objected", {}), ("basis_granted", {"interest_kind": "customer"})],
    [("created_while_suppressed", {}), ("withdrawn", {"topic": "events", "channel": "email"})],
]


def projection(contact_id: int) -> list[tuple]:
    from consent.models import PermissionState
    from extensions import db

    rows = db.session.scalars(
        sa.select(PermissionState)
        .where(PermissionState.contact_id == contact_id)
        .order_by(PermissionState.topic, PermissionState.channel)
    )
    return [
        (
            r.topic,
            r.channel,
            r.pending_since is not None,
            r.consent_since is not None,
            r.unsubscribed_since is not None,
            r.objected_since is not None,
            r.customer_since is not None,
            r.industry_list_since is not None,
        )
        for r in rows
    ]


@pytest.mark.parametrize("sequence", SEQUENCES)
def test_batch_and_single_folds_agree(app_ctx, sequence) -> None:
    from consent.ledger import record, record_many
    from consent.models import EventKind
    from crm.access import SYSTEM_ACTOR
    from crm.models import Contact
    from extensions import db

    one, many, other = (Contact(email=f"{n}@kund.se") for n in ("one", "many", "other"))
    db.session.add_all([one, many, other])
    db.session.flush()
    for kind, options in sequence:
        record(one, EventKind(kind), actor=SYSTEM_ACTOR, source="api", **options)
        record_many([many, other], EventKind(kind), actor=SYSTEM_ACTOR, source="api", **options)
    db.session.commit()
    assert projection(one.id) == projection(many.id) == projection(other.id)
    assert projection(one.id)


def test_record_many_refuses_kinds_that_change_the_contact(app_ctx) -> None:
    from consent.ledger import record_many
    from consent.models import EventKind
    from crm.access import SYSTEM_ACTOR

    with pytest.raises(ValueError, match="record"):
        record_many([], EventKind.RESTRICTED, actor=SYSTEM_ACTOR, source="api")
