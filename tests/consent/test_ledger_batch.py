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
            r.customer_event_id is not None,
            r.industry_list_event_id is not None,
        )
        for r in rows
    ]


@pytest.mark.parametrize("sequence", SEQUENCES)
def test_batch_and_single_folds_agree(app_ctx, sequence) -> None:
    from consent.ledger import record, record_many
    from consent.models import EventKind
    from crm.models import Contact
    from extensions import db
    from kernel.access import SYSTEM_ACTOR

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
    from kernel.access import SYSTEM_ACTOR

    with pytest.raises(ValueError, match="record"):
        record_many([], EventKind.RESTRICTED, actor=SYSTEM_ACTOR, source="api")


BEFORE_A_GRANT = [
    [],
    [("basis_granted", {"interest_kind": "customer"})],
    [("basis_granted", {"interest_kind": "industry_list"})],
    [("objected", {})],
    [("unsubscribed", {}), ("basis_ended", {"interest_kind": "customer"})],
]


def basis_event(contact_id: int, interest_kind: str) -> tuple | None:
    """The event the blanket projection row names as the basis ``interest_kind``
    (its own column per ground), as (contact, kind, interest)."""
    from consent.models import ConsentEvent, PermissionState
    from extensions import db

    row = db.session.get(PermissionState, (contact_id, "*", "*"))
    event_id = row and getattr(row, f"{interest_kind}_event_id")
    if event_id is None:
        return None
    event = db.session.get(ConsentEvent, event_id)
    return (event.contact_id, event.kind, event.interest_kind)


@pytest.mark.parametrize("interest_kind", ["customer", "industry_list"])
@pytest.mark.parametrize("before", BEFORE_A_GRANT)
def test_set_based_grant_folds_as_record_does(app_ctx, before, interest_kind) -> None:
    from consent.ledger import record, record_set
    from consent.models import ConsentEvent, EventKind
    from crm.models import Contact
    from extensions import db
    from kernel.access import SYSTEM_ACTOR

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
        # Its own grant, in its own ground's column, however it was folded.
        assert basis_event(contact.id, interest_kind) == (
            contact.id,
            "basis_granted",
            interest_kind,
        )
        events = db.session.scalars(
            sa.select(ConsentEvent.kind).where(ConsentEvent.contact_id == contact.id)
        ).all()
        assert events.count("basis_granted") == 1 + sum(k == "basis_granted" for k, _ in before)


def test_record_set_refuses_kinds_it_cannot_fold_in_sql(app_ctx) -> None:
    from consent.ledger import record_set
    from consent.models import EventKind
    from crm.models import Contact
    from kernel.access import SYSTEM_ACTOR

    with pytest.raises(ValueError, match="record"):
        record_set(sa.select(Contact.id), EventKind.OBJECTED, actor=SYSTEM_ACTOR, source="api")


BEFORE_AN_OBJECTION = [
    [],
    [("objected", {})],
    [("objected", {"channel": "email"})],
    [("unsubscribed", {}), ("confirmed", {"topic": "newsletter", "channel": "email"})],
    [("objected", {}), ("objection_lifted", {})],
]


def objection_state(contact_id: int, channel: str) -> tuple | None:
    """The projection's objection for one channel: (objected?, the position of
    the event it names in the contact's ledger, whether its date is that event's)."""
    from consent.models import ConsentEvent, PermissionState
    from extensions import db

    row = db.session.get(PermissionState, (contact_id, "*", channel))
    if row is None:
        return None
    ledger_ids = db.session.scalars(
        sa.select(ConsentEvent.id)
        .where(ConsentEvent.contact_id == contact_id)
        .order_by(ConsentEvent.id)
    ).all()
    named = db.session.get(ConsentEvent, row.objection_event_id) if row.objection_event_id else None
    return (
        row.objected_since is not None,
        ledger_ids.index(named.id) if named else None,
        named is not None and named.occurred_at == row.objected_since,
    )


@pytest.mark.parametrize("via", [None, "phone"])
@pytest.mark.parametrize("channel", ["*", "email"])
@pytest.mark.parametrize("before", BEFORE_AN_OBJECTION)
def test_the_objection_fast_path_folds_as_record_does(app_ctx, before, channel, via) -> None:
    from consent import ledger
    from consent.models import ConsentEvent, EventKind
    from crm.models import Contact
    from extensions import db
    from kernel.access import SYSTEM_ACTOR

    one, fast = (Contact(email=f"{n}@kund.se") for n in ("one", "fast"))
    db.session.add_all([one, fast])
    db.session.flush()
    for kind, options in before:
        for contact in (one, fast):
            record_options = {"received_via": "web"} if kind == "objection_lifted" else {}
            ledger.record(
                contact,
                EventKind(kind),
                actor=SYSTEM_ACTOR,
                source="api",
                **options,
                **record_options,
            )
    db.session.commit()
    interaction_before = {c.id: c.last_interaction_at for c in (one, fast)}
    one_id, fast_id = one.id, fast.id
    options = {"actor": SYSTEM_ACTOR, "source": "staff", "channel": channel, "received_via": via}
    expected = ledger.record(one, EventKind.OBJECTED, **options)
    event, email = ledger.record_objection(fast_id, **options, note="by phone")
    db.session.commit()

    assert email == "fast@kund.se"
    assert projection(one_id) == projection(fast_id)
    assert objection_state(one_id, channel) == objection_state(fast_id, channel)
    stored = db.session.get(ConsentEvent, event.id)
    assert (stored.contact_id, stored.kind, stored.channel, stored.received_via) == (
        fast_id,
        "objected",
        channel,
        via,
    )
    assert (event.kind, event.channel, event.note, event.recorded_by) == (
        stored.kind,
        stored.channel,
        "by phone",
        stored.recorded_by,
    )
    assert (expected.kind, expected.channel) == (stored.kind, stored.channel)
    # An objection, even one received by phone, is not an interaction that keeps
    # the data longer (X16: honouring a "no" needs only the suppression entry);
    # both paths leave the retention clock where it was.
    for contact_id in (one_id, fast_id):
        assert (
            db.session.get(Contact, contact_id).last_interaction_at
            == (interaction_before[contact_id])
        )


def test_the_objection_fast_path_refuses_an_unknown_contact_and_writes_nothing(app_ctx) -> None:
    from consent import ledger
    from consent.models import ConsentEvent
    from extensions import db
    from kernel.access import SYSTEM_ACTOR
    from kernel.errors import NotFound

    for contact_id in (424242, 2**40, 0, -1):
        with pytest.raises(NotFound):
            ledger.record_objection(contact_id, actor=SYSTEM_ACTOR, source="staff")
    db.session.commit()
    assert db.session.scalar(sa.select(sa.func.count()).select_from(ConsentEvent)) == 0
