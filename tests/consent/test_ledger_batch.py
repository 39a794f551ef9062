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


BEFORE_A_GRANT = [
    [],
    [("basis_granted", {"interest_kind": "customer"})],
    [("basis_granted", {"interest_kind": "industry_list"})],
    [("objected", {})],
    [("unsubscribed", {}), ("basis_ended", {"interest_kind": "customer"})],
]


def basis_event(contact_id: int) -> tuple | None:
    """The event the blanket projection row names as its basis, as (contact, kind, interest)."""
    from consent.models import ConsentEvent, PermissionState
    from extensions import db

    row = db.session.get(PermissionState, (contact_id, "*", "*"))
    if row is None or row.basis_event_id is None:
        return None
    event = db.session.get(ConsentEvent, row.basis_event_id)
    return (event.contact_id, event.kind, event.interest_kind)


@pytest.mark.parametrize("interest_kind", ["customer", "industry_list"])
@pytest.mark.parametrize("before", BEFORE_A_GRANT)
def test_set_based_grant_folds_as_record_does(app_ctx, before, interest_kind) -> None:
    from consent.ledger import record, record_set
    from consent.models import ConsentEvent, EventKind
    from crm.access import SYSTEM_ACTOR
    from crm.models import Contact
    from extensions import db

    one, many, other = (Contact(email=f"{n}@kund.se") for n in ("one", "many", "other"))
    db.session.add_all([one, many, other])
    db.session.flush()
    for kind, options in before:
        for contact in (one, many, other):
            record(contact, EventKind(kind), actor=SYSTEM_ACTOR, source="api", **options)
    grant = {"actor": SYSTEM_ACTOR, "source": "import", "interest_kind": interest_kind}
    record(one, EventKind.BASIS_GRANTED, **grant)
    ids = record_set(
        sa.select(Contact.id).where(Contact.id.in_([many.id, other.id])),
        EventKind.BASIS_GRANTED,
        **grant,
    )
    db.session.commit()
    assert sorted(ids) == sorted([many.id, other.id])
    assert projection(one.id) == projection(many.id) == projection(other.id)
    for contact in (one, many, other):
        named = basis_event(contact.id)
        assert named is None or named[0] == contact.id
        assert (named is None) == (basis_event(one.id) is None)
        events = db.session.scalars(
            sa.select(ConsentEvent.kind).where(ConsentEvent.contact_id == contact.id)
        ).all()
        assert events.count("basis_granted") == 1 + sum(k == "basis_granted" for k, _ in before)


def test_record_set_refuses_kinds_it_cannot_fold_in_sql(app_ctx) -> None:
    from consent.ledger import record_set
    from consent.models import EventKind
    from crm.access import SYSTEM_ACTOR
    from crm.models import Contact

    with pytest.raises(ValueError, match="record"):
        record_set(sa.select(Contact.id), EventKind.OBJECTED, actor=SYSTEM_ACTOR, source="api")
