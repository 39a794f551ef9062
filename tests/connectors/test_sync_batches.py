"""The inbound path works a page of CRM records at a time (issue 24)."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from connectors import sync
from connectors.models import ConnectorRecord
from extensions import db
from tests.connectors.conftest import run_sync
from tests.connectors.hubspot_standin import HubSpotStandIn

CALL_AT = "2026-03-04T10:15:00Z"


def crm_of(hubspot: HubSpotStandIn, n: int, *, start: int = 0) -> list[str]:
    """``n`` contacts with one call each, one company per 20 (every other one a customer)."""
    companies = [
        hubspot.add(
            "companies",
            {
                "name": f"Kund {start + i} AB",
                "country": "SE",
                "lifecyclestage": "customer" if i % 2 else "lead",
            },
        )
        for i in range(max(n // 20, 1))
    ]
    contacts = []
    for i in range(n):
        contact = hubspot.add(
            "contacts",
            {
                "email": f"person{start + i}@kund{(start + i) // 20}.se",
                "firstname": "P",
                "lastname": str(i),
                "country": "SE",
            },
            {"companies": [companies[i // 20 % len(companies)]]},
        )
        hubspot.add("calls", {"hs_timestamp": CALL_AT}, {"contacts": [contact]})
        contacts.append(contact)
    return contacts


def inbound_statements(app: Any, monkeypatch: pytest.MonkeyPatch) -> tuple[int, int]:
    """One sync; the SQL statements of its inbound part (contacts and
    interactions read from the CRM) and of the whole run."""
    counts = {"inbound": 0, "all": 0}
    inbound = [False]

    def count(*_: Any) -> None:
        counts["all"] += 1
        if inbound[0]:
            counts["inbound"] += 1

    def counted(function: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            inbound[0] = True
            try:
                return function(*args, **kwargs)
            finally:
                inbound[0] = False

        return wrapper

    monkeypatch.setattr(sync, "_inbound_contacts", counted(sync._inbound_contacts))
    monkeypatch.setattr(sync, "_inbound_activities", counted(sync._inbound_activities))
    with app.app_context():
        engine = db.engine
    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        assert run_sync(app, "hubspot").outcome == "done"
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)
    return counts["inbound"], counts["all"]


def test_a_page_costs_a_fixed_number_of_statements_not_some_per_contact(
    app, hubspot, monkeypatch
) -> None:
    """A first sync of a page of 100 contacts with a call each; the per-contact
    path took about 44 statements per contact with its call (4,359 here)."""
    crm_of(hubspot, 100)
    first, _ = inbound_statements(app, monkeypatch)
    # The contacts' page: its reads, one INSERT of contacts, and each of its five
    # companies once; the calls' page: its reads, one INSERT each of activities,
    # audit entries and records. The meetings' page is empty.
    assert first <= 130, first
    # Unchanged since: a page costs its three lookups.
    second, _ = inbound_statements(app, monkeypatch)
    assert second <= 20, second


def test_contacts_of_the_crm_arrive_with_their_company_basis_audit_and_one_announcement(
    app, hubspot
) -> None:
    from consent import services as consent
    from consent.models import ConsentEvent, EventKind
    from crm.models import AuditEntry, Contact
    from kernel.signals import decisions_changed

    remotes = crm_of(hubspot, 40)  # company 0 a lead, company 1 a customer
    told: list[dict[str, Any]] = []

    def note(sender: Any, **kwargs: Any) -> None:
        told.append(kwargs)

    decisions_changed.connect(note)
    try:
        assert run_sync(app, "hubspot").outcome == "done"
    finally:
        decisions_changed.disconnect(note)
    with app.app_context():
        ids = dict(
            db.session.execute(sa.select(Contact.email, Contact.id).order_by(Contact.id)).all()
        )
        assert len(ids) == 40
        # One announcement for the page's new contacts, naming them all.
        pages = [t for t in told if t.get("contact_ids")]
        assert len(pages) == 1 and sorted(pages[0]["contact_ids"]) == sorted(ids.values())
        # R1: the customer company's 20 contacts hold its basis; the lead's none.
        granted = db.session.scalars(
            sa.select(ConsentEvent.contact_id).where(
                ConsentEvent.kind == EventKind.BASIS_GRANTED, ConsentEvent.source == "company"
            )
        ).all()
        assert sorted(granted) == sorted(ids[f"person{i}@kund1.se"] for i in range(20, 40))
        decisions = consent.decisions_for_contacts(list(ids.values()))
        assert any(d.allowed for d in decisions[ids["person25@kund1.se"]])
        assert not any(d.allowed for d in decisions[ids["person5@kund0.se"]])
        # R25: each creation and each call audited, on the connector's behalf.
        audited = db.session.execute(
            sa.select(AuditEntry.action, sa.func.count())
            .where(AuditEntry.actor == "system:connector:hubspot")
            .group_by(AuditEntry.action)
        ).all()
        assert dict(audited) == {"contact.create": 40, "activity.create": 40}
        # Each contact's external id, and each call's record naming its own activity.
        from connectors.models import ConnectorRecord
        from crm import external_ids
        from crm.models import Activity

        assert external_ids.contacts_holding("hubspot", remotes) == {
            r: ids[f"person{i}@kund{i // 20}.se"] for i, r in enumerate(remotes)
        }
        calls = db.session.execute(
            sa.select(ConnectorRecord.contact_id, Activity.contact_id)
            .join(Activity, Activity.id == ConnectorRecord.activity_id)
            .where(ConnectorRecord.object_type == "calls")
        ).all()
        assert len(calls) == 40 and all(a == b for a, b in calls)
        created = db.session.scalars(
            sa.select(ConnectorRecord.created_contact).where(
                ConnectorRecord.object_type == "contacts"
            )
        ).all()
        assert created == [True] * 40


def test_a_second_sync_of_pages_changes_nothing(app, hubspot) -> None:
    from tests.conftest import count_rows

    crm_of(hubspot, 40)
    assert run_sync(app, "hubspot").outcome == "done"
    before = count_rows(app)
    result = run_sync(app, "hubspot")
    assert result.items_in == 0 and result.items_out == 0
    after = count_rows(app)
    # Only the audit log of the sync's own reads may grow; nothing else.
    assert {k: v for k, v in after.items() if before[k] != v} == {}


def test_invalid_records_in_a_page_are_skipped_with_their_reason_and_the_rest_created(
    app, hubspot
) -> None:
    good = hubspot.add("contacts", {"email": "Bra@Kund.se", "country": "SE"})
    bad = hubspot.add("contacts", {"email": "inte en adress", "country": "SE"})
    none = hubspot.add("contacts", {"firstname": "Utan"})
    land = hubspot.add("contacts", {"email": "land@kund.se", "country": "Atlantis"})
    result = run_sync(app, "hubspot")
    reasons = {s["id"]: s["reason"] for s in result.skipped}
    assert set(reasons) == {bad, none, land}
    assert "email" in reasons[bad].lower() or "address" in reasons[bad].lower()
    assert reasons[none] == "The record has no email address."
    from tests.connectors.conftest import contact_of

    contact = contact_of(app, "hubspot", good)
    assert contact is not None and contact.email == "bra@kund.se"
    # Reported once per change of the record: the next sync names none again.
    assert run_sync(app, "hubspot").skipped == []


def test_a_suppressed_address_new_in_a_page_is_stored_and_never_allowed(app, hubspot) -> None:
    """R22: also at a sub-address of a suppressed mailbox (X5)."""
    from consent import services as consent
    from consent.models import ConsentEvent, EventKind
    from consent.suppression import suppress

    with app.app_context():
        suppress("nej@kund1.se", "unsubscribed")
        db.session.commit()
    remotes = crm_of(hubspot, 20, start=20)  # a customer company's contacts
    listed = hubspot.add(
        "contacts", {"email": "nej+crm@kund1.se", "country": "SE"}, {"companies": []}
    )
    run_sync(app, "hubspot")
    from tests.connectors.conftest import contact_of

    contact = contact_of(app, "hubspot", listed)
    other = contact_of(app, "hubspot", remotes[0])
    with app.app_context():
        kinds = db.session.scalars(
            sa.select(ConsentEvent.kind).where(ConsentEvent.contact_id == contact.id)
        ).all()
        assert EventKind.CREATED_WHILE_SUPPRESSED in kinds
        assert not any(d.allowed for d in consent.decisions_for_contacts([contact.id])[contact.id])
        others = db.session.scalars(
            sa.select(ConsentEvent.kind).where(ConsentEvent.contact_id == other.id)
        ).all()
        assert EventKind.CREATED_WHILE_SUPPRESSED not in others


def test_a_back_dated_call_moves_only_the_clock_of_a_contact_the_page_created(app, hubspot) -> None:
    """X16: one page of calls for a contact that was here first and one the
    sync created; only the latter takes the call's (earlier) date."""
    from consent import services as consent
    from kernel.access import CLI_ACTOR
    from tests.connectors.conftest import contact_of

    with app.app_context():
        consent.register_contact(CLI_ACTOR, "forst@kund.se", {})
    first = hubspot.add("contacts", {"email": "forst@kund.se"})
    new = hubspot.add("contacts", {"email": "ny@kund.se"})
    for remote in (first, new):
        hubspot.add("calls", {"hs_timestamp": CALL_AT}, {"contacts": [remote]})
    run_sync(app, "hubspot")
    assert contact_of(app, "hubspot", first).last_interaction_at is None
    assert (
        contact_of(app, "hubspot", new)
        .last_interaction_at.isoformat()
        .startswith("2026-03-04T10:15")
    )


def test_the_crm_never_undoes_a_no_of_a_contact_here(app, hubspot) -> None:
    from consent import services as consent
    from kernel.access import CLI_ACTOR

    with app.app_context():
        known = consent.register_contact(CLI_ACTOR, "person25@kund1.se", {}).contact.id
        consent.record_objection(CLI_ACTOR, known)
    crm_of(hubspot, 40)  # person25 works at a customer company in the CRM
    run_sync(app, "hubspot")
    with app.app_context():
        decisions = consent.decisions_for_contacts([known])[known]
        assert decisions and not any(d.allowed for d in decisions)
        assert {d.reason.value for d in decisions} == {"objection"}


def test_the_same_person_twice_in_one_page_is_one_contact_linked_to_both(app, hubspot) -> None:
    from connectors.models import ConnectorRecord
    from crm import external_ids
    from crm.models import Contact

    one = hubspot.add("contacts", {"email": "Dubbel@Kund.se", "firstname": "Ett"})
    two = hubspot.add("contacts", {"email": "dubbel@kund.se", "firstname": "Två"})
    result = run_sync(app, "hubspot")
    assert result.skipped == []
    with app.app_context():
        contacts = db.session.scalars(sa.select(Contact)).all()
        assert len(contacts) == 1 and contacts[0].name == "Två"
        linked = db.session.scalars(
            sa.select(ConnectorRecord.contact_id).where(ConnectorRecord.object_type == "contacts")
        ).all()
        assert linked == [contacts[0].id] * 2
        # The external id names the last one read, as one by one.
        assert external_ids.for_contacts([contacts[0].id])[contacts[0].id] == {"hubspot": two}
        assert one != two


def test_a_restricted_contact_takes_no_call_and_the_reason_is_reported(app, hubspot) -> None:
    """GDPR art. 18, as log_activity refuses it; the page's other calls are logged."""
    from consent import services as consent
    from crm.models import Activity
    from kernel.access import CLI_ACTOR

    remotes = crm_of(hubspot, 3)
    run_sync(app, "hubspot")
    from tests.connectors.conftest import contact_of

    held = contact_of(app, "hubspot", remotes[0])
    with app.app_context():
        consent.restrict_processing(CLI_ACTOR, held.id)
    for remote in remotes:
        hubspot.add("calls", {"hs_timestamp": CALL_AT}, {"contacts": [remote]})
    result = run_sync(app, "hubspot")
    assert [s["object"] for s in result.skipped] == ["calls"]
    assert "restrict" in result.skipped[0]["reason"].lower()
    with app.app_context():
        counts = dict(
            db.session.execute(
                sa.select(Activity.contact_id, sa.func.count()).group_by(Activity.contact_id)
            ).all()
        )
        assert counts[held.id] == 1 and sorted(counts.values()) == [1, 2, 2]


def test_a_page_the_batch_cannot_take_goes_one_by_one(app, hubspot, monkeypatch) -> None:
    """A concurrent writer took an address meanwhile: the page's records are
    applied one by one, each refusal its own."""
    from consent import services as consent
    from crm.models import Contact

    def clash(*_: Any, **__: Any) -> Any:
        raise sa.exc.IntegrityError("INSERT", {}, Exception("unique"))

    monkeypatch.setattr(consent, "register_new_contacts", clash)
    crm_of(hubspot, 20)
    result = run_sync(app, "hubspot")
    assert result.outcome == "done" and result.items_in == 40
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Contact)) == 20


def test_each_new_contact_s_decisions_go_out_once_though_its_feed_items_are_pages_apart(
    app, hubspot
) -> None:
    """A page of new contacts puts their contact.created items before their
    decisions_changed items; with 200 contacts the two items of some customer
    contacts fall on different pages of the change feed. Written once each."""
    crm_of(hubspot, 200)
    result = run_sync(app, "hubspot")
    assert result.outcome == "done"
    patches = [p for m, p in hubspot.requests if m == "PATCH" and "/objects/contacts/" in p]
    assert len(patches) == len(set(patches)) == 200
    assert result.items_out == 200


def test_an_update_that_fails_is_applied_at_the_next_sync(app, hubspot, monkeypatch) -> None:
    """A known contact's changed record goes one by one: its new fingerprint
    commits with the update, so a sync that fails there loses nothing."""
    from consent import services as consent
    from tests.connectors.conftest import contact_of

    remote = hubspot.add("contacts", {"email": "anna@kund.se", "firstname": "Anna"})
    run_sync(app, "hubspot")
    hubspot.touch("contacts", remote, {"lastname": "Berg"})
    real = consent.register_contact

    def down(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the database went away")

    monkeypatch.setattr(consent, "register_contact", down)
    assert run_sync(app, "hubspot").outcome == "unavailable"
    monkeypatch.setattr(consent, "register_contact", real)
    assert run_sync(app, "hubspot").outcome == "done"
    assert contact_of(app, "hubspot", remote).name == "Anna Berg"


def test_a_run_stopped_right_after_a_page_s_contacts_commit_keeps_them_linked_as_created(
    app, hubspot
) -> None:
    """The link and the "created by this connector" mark commit with the
    contacts: a run that stops just after (here a receiver of the page's
    announcement failing) cannot leave them unlinked, to be read later as
    here first (X16: then the CRM's history would stop counting)."""
    from kernel.signals import decisions_changed
    from tests.connectors.conftest import contact_of

    remote = hubspot.add("contacts", {"email": "ny@kund.se", "firstname": "Ny"})

    def stop(*_: Any, **kwargs: Any) -> None:
        if kwargs.get("contact_ids"):
            raise RuntimeError("the worker stopped")

    decisions_changed.connect(stop)
    try:
        assert run_sync(app, "hubspot").outcome != "done"
    finally:
        decisions_changed.disconnect(stop)
    with app.app_context():
        record = db.session.execute(
            sa.select(ConnectorRecord.contact_id, ConnectorRecord.created_contact).where(
                ConnectorRecord.remote_id == remote, ConnectorRecord.object_type == "contacts"
            )
        ).one()
    assert record.contact_id is not None and record.created_contact is True
    hubspot.add("calls", {"hs_timestamp": CALL_AT}, {"contacts": [remote]})
    assert run_sync(app, "hubspot").outcome == "done"
    assert (
        contact_of(app, "hubspot", remote)
        .last_interaction_at.isoformat()
        .startswith("2026-03-04T10:15")
    )
