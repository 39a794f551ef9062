"""Legitimate interest that lapses (docs/rules.md R1, R3), pinned by outcome.

A customer basis hangs on a relationship that can end: the company's, or,
for a contact without a company, the contact's own interactions (24 months
by default); an address from an industry list expires 24 months after the
import unless the person interacted. Each time limit is stated at concrete
moments on every path that holds its own copy of the rule: the single
decision (``GET /api/v1/contacts/<id>/permissions``), the batch check
(``POST /api/v1/permissions/check``) and the campaign audience
(``consent.audience.audience_query``). The ledger tells the story: who ended
a basis and why, and a basis from the company has its own event.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from consent.audience import audience_merged, audience_query
from consent.ledger import record
from consent.models import ConsentEvent, EventKind
from consent.topics import current_policy
from crm.models import Contact
from crm.tasks import run_daily_retention
from extensions import db
from kernel.access import Actor
from kernel.timestamps import utcnow

TOPIC = "events"
SYNC = Actor(kind="cli", name="crm-sync")
CUSTOMER = {"type": "legitimate_interest", "kind": "customer", "source": "crm-sync"}
LIVE_CUSTOMER = {"name": "Kund AB", "country": "SE", "customer_since": "2020-01-01"}

# A customer basis registered on 2024-03-15 on a contact without a company,
# whose last interaction was on 2025-03-15: it lapses 24 months later.
GRANTED = datetime(2024, 3, 15, 9, 0, tzinfo=UTC)
INTERACTED = datetime(2025, 3, 15, 0, 0, tzinfo=UTC)
LAST_MOMENT = datetime(2027, 3, 14, 23, 59, 59, tzinfo=UTC)
LAPSED = datetime(2027, 3, 15, 0, 0, tzinfo=UTC)
LATE = datetime(2040, 1, 1, tzinfo=UTC)


def register(api: Any, email: str, **body: Any) -> int:
    response = api.post("/api/v1/contacts", json={"email": email, "country": "SE", **body})
    assert response.status_code in (200, 201), response.json
    return response.json["id"]


def single(api: Any, contact_id: int, email: str, at: datetime | None) -> dict[str, Any]:
    query = {"at": at.isoformat()} if at else {}
    response = api.get(f"/api/v1/contacts/{contact_id}/permissions", query_string=query)
    assert response.status_code == 200, response.json
    return next(
        d for d in response.json["decisions"] if d["topic"] == TOPIC and d["channel"] == "email"
    )


def batch(api: Any, contact_id: int, email: str, at: datetime | None) -> dict[str, Any]:
    body: dict[str, Any] = {"emails": [email], "topic": TOPIC, "channel": "email"}
    if at:
        body["at"] = at.isoformat()
    response = api.post("/api/v1/permissions/check", json=body)
    assert response.status_code == 200, response.json
    return response.json["decisions"][0]


Ask = Callable[[Any, int, str, datetime | None], dict[str, Any]]
ASK = [pytest.param(single, id="single-decision"), pytest.param(batch, id="batch-check")]


def outcome(decision: dict[str, Any]) -> tuple[bool, str, str | None]:
    return decision["allowed"], decision["reason"], decision["basis"]


def audience(app: Any, at: datetime) -> set[int]:
    with app.app_context():
        policy = current_policy()
        ids = set(db.session.scalars(audience_query(policy.topic(TOPIC), "email", at, policy)))
        # The merged shape (SQLite's audience count) selects the same contacts.
        merged = audience_merged(policy.topic(TOPIC), "email", at, policy)
        assert set(db.session.scalars(merged)) == ids
        db.session.remove()
    return ids


def events(api: Any, contact_id: int, kind: str) -> list[dict[str, Any]]:
    response = api.get(f"/api/v1/contacts/{contact_id}/events")
    assert response.status_code == 200, response.json
    return [e for e in response.json if e["kind"] == kind]


def grant_on(app: Any, contact_id: int, kind: str, at: datetime) -> None:
    """A basis the ledger recorded at ``at`` (a sync of an older relationship)."""
    with app.app_context():
        contact = db.session.get(Contact, contact_id)
        record(
            contact,
            EventKind.BASIS_GRANTED,
            actor=SYNC,
            source="crm-sync",
            at=at,
            basis="legitimate_interest",
            interest_kind=kind,
        )
        db.session.commit()
        db.session.remove()


def interacted_on(app: Any, contact_id: int, at: datetime | None) -> None:
    with app.app_context():
        db.session.execute(
            sa.update(Contact).where(Contact.id == contact_id).values(last_interaction_at=at)
        )
        db.session.commit()
        db.session.remove()


def lone_customer(app: Any, api: Any) -> tuple[int, str]:
    email = "ensam@kund.se"
    contact_id = register(api, email)
    grant_on(app, contact_id, "customer", GRANTED)
    interacted_on(app, contact_id, INTERACTED)
    return contact_id, email


# A customer basis without a company -------------------------------------------------


@pytest.mark.parametrize("ask", ASK)
def test_a_customer_contact_without_a_company_is_allowed_until_24_months_after_the_last_interaction(
    app, admin_api, ask: Ask
) -> None:
    contact_id, email = lone_customer(app, admin_api)
    decision = ask(admin_api, contact_id, email, LAST_MOMENT)
    assert outcome(decision) == (True, "customer", "legitimate_interest")
    assert "until 2027-03-15" in decision["explanation"]


@pytest.mark.parametrize("ask", ASK)
def test_a_customer_basis_without_a_company_lapses_24_months_after_the_last_interaction(
    app, admin_api, ask: Ask
) -> None:
    """R1: today such a basis was allowed in 2040; it lapses, and the decision says
    which ground lapsed and when."""
    contact_id, email = lone_customer(app, admin_api)
    for at in (LAPSED, LATE):
        decision = ask(admin_api, contact_id, email, at)
        assert outcome(decision) == (False, "no_basis", None), at
        assert "customer basis lapsed on 2027-03-15" in decision["explanation"]
        assert "last interaction" in decision["explanation"]


def test_campaign_audience_drops_a_customer_contact_without_a_company_when_the_basis_lapses(
    app, admin_api
) -> None:
    contact_id, _ = lone_customer(app, admin_api)
    assert contact_id in audience(app, LAST_MOMENT)
    assert contact_id not in audience(app, LAPSED)


@pytest.mark.parametrize("ask", ASK)
def test_without_an_interaction_a_customer_basis_counts_24_months_from_its_start(
    app, admin_api, ask: Ask
) -> None:
    contact_id, email = lone_customer(app, admin_api)
    interacted_on(app, contact_id, None)
    assert ask(admin_api, contact_id, email, GRANTED + timedelta(days=365))["allowed"]
    decision = ask(admin_api, contact_id, email, datetime(2026, 3, 15, 9, 0, tzinfo=UTC))
    assert outcome(decision) == (False, "no_basis", None)
    assert contact_id not in audience(app, datetime(2026, 3, 15, 9, 0, tzinfo=UTC))


# Moving to another company, and the company's relationship ------------------------------


def customer_contact(api: Any, email: str = "lena@kund.se") -> int:
    return register(api, email, company=LIVE_CUSTOMER, basis=CUSTOMER)


@pytest.mark.parametrize("ask", ASK)
def test_a_customer_contact_who_moves_to_a_company_that_is_not_a_customer_has_no_basis(
    app, admin_api, ask: Ask
) -> None:
    contact_id = customer_contact(admin_api)
    moved = admin_api.patch(
        f"/api/v1/contacts/{contact_id}", json={"company": {"name": "Annat AB"}}
    )
    assert moved.status_code == 200, moved.json
    for at in (None, LATE):
        decision = ask(admin_api, contact_id, "lena@kund.se", at)
        assert outcome(decision) == (False, "no_basis", None)
    assert contact_id not in audience(app, utcnow())


def test_a_move_to_another_company_is_written_to_the_ledger_with_who_and_why(
    admin_api,
) -> None:
    contact_id = customer_contact(admin_api)
    admin_api.patch(f"/api/v1/contacts/{contact_id}", json={"company": {"name": "Annat AB"}})
    (ended,) = events(admin_api, contact_id, "basis_ended")
    assert ended["interest_kind"] == "customer"
    assert ended["recorded_by"].startswith("token:")
    assert "moved" in ended["note"]


def test_a_contact_who_joins_a_customer_company_gets_its_basis_in_the_ledger(
    admin_api,
) -> None:
    register(admin_api, "anna@kund.se", company=LIVE_CUSTOMER)
    contact_id = register(admin_api, "per@annat.se", company={"name": "Annat AB"})
    admin_api.patch(f"/api/v1/contacts/{contact_id}", json={"company": {"name": "Kund AB"}})
    (granted,) = events(admin_api, contact_id, "basis_granted")
    assert (granted["interest_kind"], granted["source"]) == ("customer", "company")
    decision = single(admin_api, contact_id, "per@annat.se", None)
    assert outcome(decision) == (True, "customer", "legitimate_interest")
    assert decision["event_id"] == granted["id"]


def end_relationship(api: Any, contact_id: int, day: str) -> None:
    response = api.patch(
        f"/api/v1/contacts/{contact_id}",
        json={"company": {"name": "Kund AB", "relationship_ended_at": day}},
    )
    assert response.status_code == 200, response.json


def test_the_end_of_a_companys_relationship_is_written_to_each_contacts_ledger(
    admin_api,
) -> None:
    first = customer_contact(admin_api)
    second = register(admin_api, "olle@kund.se", company=LIVE_CUSTOMER)
    end_relationship(admin_api, first, "2026-01-10")
    for contact_id in (first, second):
        (ended,) = events(admin_api, contact_id, "basis_ended")
        assert ended["recorded_by"].startswith("token:")
        assert "relationship ended on 2026-01-10" in ended["note"]
        assert "until 2027-01-10" in ended["note"]


def test_the_grace_period_is_named_in_the_decision_and_its_end_too(admin_api) -> None:
    contact_id = customer_contact(admin_api)
    end_relationship(admin_api, contact_id, "2026-01-10")
    within = single(admin_api, contact_id, "lena@kund.se", datetime(2026, 6, 1, tzinfo=UTC))
    assert outcome(within) == (True, "customer", "legitimate_interest")
    assert "grace period" in within["explanation"]
    over = single(admin_api, contact_id, "lena@kund.se", datetime(2027, 1, 10, tzinfo=UTC))
    assert outcome(over) == (False, "no_basis", None)
    assert "relationship ended on 2026-01-10" in over["explanation"]


def test_a_returning_customer_is_granted_the_basis_again(admin_api) -> None:
    contact_id = customer_contact(admin_api)
    before = len(events(admin_api, contact_id, "basis_granted"))
    end_relationship(admin_api, contact_id, "2024-01-10")
    assert not single(admin_api, contact_id, "lena@kund.se", None)["allowed"]
    back = admin_api.patch(
        f"/api/v1/contacts/{contact_id}",
        json={"company": {"name": "Kund AB", "customer_since": utcnow().date().isoformat()}},
    )
    assert back.status_code == 200, back.json
    granted = events(admin_api, contact_id, "basis_granted")
    assert len(granted) == before + 1
    assert "returned as a customer" in granted[-1]["note"]
    decision = single(admin_api, contact_id, "lena@kund.se", None)
    assert outcome(decision) == (True, "customer", "legitimate_interest")
    assert decision["event_id"] == granted[-1]["id"]


# The company's basis has its own ledger event ---------------------------------------------


def test_a_contact_of_a_customer_company_has_a_ledger_event_behind_its_basis(admin_api) -> None:
    """R5: the company's basis has evidence like every other (event_id was null
    and the contact's ledger empty)."""
    contact_id = register(admin_api, "eva@kund.se", company=LIVE_CUSTOMER)
    (granted,) = events(admin_api, contact_id, "basis_granted")
    assert (granted["source"], granted["source_ref"]) == ("company", granted["source_ref"])
    assert granted["source_ref"].startswith("company:")
    decision = single(admin_api, contact_id, "eva@kund.se", None)
    assert decision["event_id"] == granted["id"]


def test_when_a_company_becomes_a_customer_each_of_its_contacts_gets_basis_granted(
    admin_api,
) -> None:
    ids = [
        register(admin_api, f"k{i}@prospekt.se", company={"name": "Prospekt AB"}) for i in range(3)
    ]
    assert all(events(admin_api, i, "basis_granted") == [] for i in ids)
    became = admin_api.patch(
        f"/api/v1/contacts/{ids[0]}",
        json={"company": {"name": "Prospekt AB", "customer_since": "2026-02-01"}},
    )
    assert became.status_code == 200, became.json
    for contact_id in ids:
        (granted,) = events(admin_api, contact_id, "basis_granted")
        assert "became a customer on 2026-02-01" in granted["note"]
        assert single(admin_api, contact_id, "", None)["event_id"] == granted["id"]


# Industry lists expire --------------------------------------------------------------------


def listed_contact(app: Any, api: Any, interaction: datetime | None) -> tuple[int, str]:
    email = "inkop@bransch.se"
    contact_id = register(api, email)
    grant_on(app, contact_id, "industry_list", GRANTED)
    interacted_on(app, contact_id, interaction)
    return contact_id, email


@pytest.mark.parametrize("ask", ASK)
def test_an_industry_list_address_expires_24_months_after_the_import(
    app, admin_api, ask: Ask
) -> None:
    contact_id, email = listed_contact(app, admin_api, None)
    before = datetime(2026, 3, 15, 8, 59, 59, tzinfo=UTC)
    after = datetime(2026, 3, 15, 9, 0, tzinfo=UTC)
    assert outcome(ask(admin_api, contact_id, email, before)) == (
        True,
        "industry_list",
        "legitimate_interest",
    )
    decision = ask(admin_api, contact_id, email, after)
    assert outcome(decision) == (False, "no_basis", None)
    assert "industry-list basis lapsed on 2026-03-15" in decision["explanation"]
    assert contact_id in audience(app, before)
    assert contact_id not in audience(app, after)


@pytest.mark.parametrize("ask", ASK)
def test_an_interaction_keeps_an_industry_list_address_for_24_months_more(
    app, admin_api, ask: Ask
) -> None:
    contact_id, email = listed_contact(app, admin_api, datetime(2025, 6, 1, tzinfo=UTC))
    last = datetime(2027, 5, 31, 23, 59, 59, tzinfo=UTC)
    gone = datetime(2027, 6, 1, tzinfo=UTC)
    assert ask(admin_api, contact_id, email, last)["reason"] == "industry_list"
    assert ask(admin_api, contact_id, email, gone)["reason"] == "no_basis"
    assert contact_id in audience(app, last)
    assert contact_id not in audience(app, gone)


# The daily run writes what lapsed by time ------------------------------------------------


def ended_events(app: Any) -> list[tuple[int, str, str, str]]:
    with app.app_context():
        rows = db.session.execute(
            sa.select(
                ConsentEvent.contact_id,
                ConsentEvent.interest_kind,
                ConsentEvent.recorded_by,
                ConsentEvent.note,
            ).where(ConsentEvent.kind == "basis_ended")
        ).all()
        db.session.remove()
    return [tuple(r) for r in rows]  # type: ignore[misc]


def test_the_daily_run_writes_each_lapsed_basis_to_the_ledger_once(app, admin_api) -> None:
    customer_id, _ = lone_customer(app, admin_api)
    listed_id = register(admin_api, "lista@bransch.se")
    grant_on(app, listed_id, "industry_list", GRANTED)
    live_id = register(admin_api, "ny@bransch.se")
    grant_on(app, live_id, "industry_list", datetime(2027, 1, 1, tzinfo=UTC))
    from consent.bases import reconcile_bases

    with app.app_context():
        reconcile_bases(LAPSED)
        reconcile_bases(LAPSED)
        db.session.remove()
    ended = {(c, k): (who, note) for c, k, who, note in ended_events(app)}
    assert set(ended) == {(customer_id, "customer"), (listed_id, "industry_list")}
    assert len(ended_events(app)) == 2, "a second run writes nothing"
    assert ended[(customer_id, "customer")][0] == "system:daily-bases"
    assert "without a company" in ended[(customer_id, "customer")][1]
    assert "industry list" in ended[(listed_id, "industry_list")][1]


def test_the_daily_retention_job_also_runs_the_lapse_of_bases(app, admin_api, stub_worker) -> None:
    """The scheduler's daily job (crm.tasks.run_daily_retention) announces the day;
    consent writes the bases that lapsed by then."""
    listed_id = register(admin_api, "gammal@bransch.se")
    grant_on(app, listed_id, "industry_list", utcnow() - timedelta(days=800))
    run_daily_retention.send()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not ended_events(app):
        time.sleep(0.1)
    stub_worker.join("retention")
    assert [(c, k) for c, k, _, _ in ended_events(app)] == [(listed_id, "industry_list")]


@pytest.mark.parametrize("ask", ASK)
def test_a_customer_basis_does_not_follow_a_contact_to_a_company_that_is_not_a_customer(
    app, admin_api, ask: Ask
) -> None:
    """A company change the ledger never heard of (a connector writing the
    column, data from before this rule) still ends the basis in the decision,
    and the daily run writes its end."""
    contact_id = register(admin_api, "flyttad@kund.se", basis=CUSTOMER)
    other = register(admin_api, "kollega@annat.se", company={"name": "Annat AB"})
    with app.app_context():
        company_id = db.session.get(Contact, other).company_id
        db.session.execute(
            sa.update(Contact).where(Contact.id == contact_id).values(company_id=company_id)
        )
        db.session.commit()
        db.session.remove()
    decision = ask(admin_api, contact_id, "flyttad@kund.se", None)
    assert outcome(decision) == (False, "no_basis", None)
    assert "company is not a customer" in decision["explanation"]
    assert contact_id not in audience(app, utcnow())
    from consent.bases import reconcile_bases

    with app.app_context():
        reconcile_bases()
        db.session.remove()
    assert [(c, k) for c, k, _, _ in ended_events(app)] == [(contact_id, "customer")]


def test_the_daily_runs_job_can_be_run_by_hand_as_of_a_date(app, admin_api, runner_for) -> None:
    listed_id = register(admin_api, "hand@bransch.se")
    grant_on(app, listed_id, "industry_list", GRANTED)
    result = runner_for(app).invoke(
        args=["permissions", "reconcile-bases", "--as-of", "2026-03-16"]
    )
    assert result.exit_code == 0, result.output
    assert "industry list expired 1" in result.output
    ((contact_id, kind, who, _),) = ended_events(app)
    assert (contact_id, kind) == (listed_id, "industry_list")
    assert who.startswith("cli:")
