"""The dashboard's numbers, section by section, on fixtures whose answers are
known; its page and charts per role and language."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from consent.audience import reason_counts
from consent.ledger import record
from consent.models import EventKind, PrivacyRequest
from consent.policy import Reason, decide, standings_by_id
from consent.suppression import suppress
from consent.topics import current_policy
from crm import retention
from crm.models import Activity, Company, Contact
from extensions import db
from kernel.access import Actor
from reports import sections, snapshots
from reports.dashboard import build_dashboard
from reports.staff_pages import CHART_POLICY
from tests.consent.test_audience import _random_contact
from tests.consent.test_marketing_policies import load
from tests.staff.helpers import client_as

ACTOR = Actor(kind="cli", name="test")
# A Wednesday: its week starts on Monday 2026-12-07.
AT = datetime(2026, 12, 9, 12, 0, tzinfo=UTC)


def _contact(email: str, **fields: Any) -> Contact:
    contact = Contact(email=email, **fields)
    db.session.add(contact)
    db.session.flush()
    return contact


# Reachable audience ------------------------------------------------------------------


def mixed_contacts(at: datetime) -> None:
    """300 contacts with random ledgers at customers, ended customers and
    prospects in several countries, and sub-addresses (tagged3+x@) of which half
    are suppressed by their plain address: every reason code a held contact can
    have. The population the SQL copies of the decision are compared on."""
    rng = random.Random(20261206)
    companies = [
        Company(name="Live AB", country="SE", customer_since=date(2020, 1, 1)),
        Company(
            name="Ended AB",
            country="SE",
            customer_since=date(2018, 1, 1),
            relationship_ended_at=at.date() - timedelta(days=400),
        ),
        Company(name="Prospect GmbH", country="DE"),
        Company(name="Nordic AS", country="NO", customer_since=date(2021, 5, 1)),
    ]
    db.session.add_all(companies)
    for index in range(300):
        _random_contact(rng, index, companies)
    for index in range(10):
        db.session.add(Contact(email=f"tagged{index}+x@example.se", company=companies[0]))
        if index % 2:
            suppress(f"tagged{index}@example.se", reason="test")
    db.session.commit()


def test_the_counts_per_reason_equal_the_policy_over_every_contact(app_ctx) -> None:
    """The grouped query gives each reason exactly as often as ``decide`` does."""
    mixed_contacts(AT)
    standings = standings_by_id([c for (c,) in db.session.execute(db.select(Contact.id))])
    seen: set[str] = set()
    now = datetime.now(UTC)
    for policy, at in (
        (current_policy(), now),
        (current_policy(), now + timedelta(days=800)),
        (load("002-hms.toml"), now),
    ):
        for topic in policy.marketing_topics.values():
            for channel in policy.channels:
                expected = Counter(
                    decide(
                        s, email=s.email, topic=topic, channel=channel, at=at, policy=policy
                    ).reason.value
                    for s in standings.values()
                )
                counted = reason_counts(topic, channel, at, policy)
                assert counted == dict(expected), (topic.key, channel, at)
                seen |= set(counted)
    assert seen == {r.value for r in Reason} - {Reason.UNKNOWN_CONTACT.value}


def test_objections_suppressions_and_consents_are_counted_once_each(app_ctx) -> None:
    """Pinned numbers, not a comparison of two copies: a bug made in both fails here."""
    for index in range(2):
        record(
            _contact(f"objected{index}@example.se"), EventKind.OBJECTED, actor=ACTOR, source="api"
        )
    suppressed = _contact("gone@example.se")
    suppress(suppressed.email, reason="test")
    consented = _contact("yes@example.se")
    record(
        consented,
        EventKind.CONFIRMED,
        actor=ACTOR,
        source="double_opt_in",
        topic="newsletter",
        channel="email",
    )
    _contact("nobody@example.se")
    db.session.commit()
    policy = current_policy()
    counts = reason_counts(policy.topics["newsletter"], "email", AT, policy)
    assert counts == {"objection": 2, "suppressed": 1, "consent": 1, "no_basis": 1}
    reach = sections.reachability(AT, policy)
    newsletter = next(r for r in reach if (r.topic, r.channel) == ("newsletter", "email"))
    assert (newsletter.reachable, newsletter.total) == (1, 5)


# The ledger per week --------------------------------------------------------------------


def test_consents_opt_outs_and_the_confirmation_rate_per_week(app_ctx) -> None:
    def event(kind: EventKind, at: datetime, index: int, topic: str = "newsletter") -> None:
        contact = _contact(f"{kind.value}{index}@example.se")
        channel = "email" if kind is not EventKind.OBJECTED else "*"
        topic = topic if kind is not EventKind.OBJECTED else "*"
        record(contact, kind, actor=ACTOR, source="api", at=at, topic=topic, channel=channel)

    this_week, last_week = datetime(2026, 12, 8, 9, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)
    for i in range(4):
        event(EventKind.REQUESTED, this_week, i)
    for i in range(3):
        event(EventKind.CONFIRMED, this_week, i)
    event(EventKind.OBJECTED, this_week, 0)
    event(EventKind.REQUESTED, last_week, 9)
    event(EventKind.UNSUBSCRIBED, last_week, 0)
    event(EventKind.WITHDRAWN, last_week, 1)
    # Outside the twelve weeks, and after the moment counted: not counted.
    event(EventKind.REQUESTED, AT - timedelta(weeks=13), 20)
    event(EventKind.REQUESTED, AT + timedelta(hours=1), 21)
    db.session.commit()

    weeks = sections.weekly_ledger(AT)
    assert len(weeks) == 12
    assert weeks[-1] == sections.Week(date(2026, 12, 7), 4, 3, 0, 1)
    assert weeks[-1].confirmation_rate == 0.75
    assert weeks[-2] == sections.Week(date(2026, 11, 30), 1, 0, 2, 0)
    assert weeks[-2].confirmation_rate == 0
    assert all(w == sections.Week(w.start) for w in weeks[:-2])
    assert weeks[0].confirmation_rate is None


# Retention ----------------------------------------------------------------------------


def test_contacts_and_activities_fall_due_in_the_month_the_rules_say(app_ctx) -> None:
    """The default rules: contacts seven years after the last interaction, at the
    end of that year; support cases seven years after it, to the day."""
    created = datetime(2010, 1, 1, tzinfo=UTC)
    _contact(
        "2018@example.se", last_interaction_at=datetime(2018, 6, 1, tzinfo=UTC), created_at=created
    )
    _contact(
        "2019@example.se", last_interaction_at=datetime(2019, 3, 15, tzinfo=UTC), created_at=created
    )
    with_case = _contact(
        "case@example.se",
        last_interaction_at=datetime(2019, 12, 20, tzinfo=UTC),
        created_at=created,
    )
    # The boundary: kept through 2026-12-30, purged on the month's last day.
    boundary = _contact(
        "edge@example.se",
        last_interaction_at=datetime(2019, 12, 30, 10, tzinfo=UTC),
        created_at=created,
    )
    _contact(
        "2020@example.se", last_interaction_at=datetime(2020, 5, 1, tzinfo=UTC), created_at=created
    )
    _contact("recent@example.se", last_interaction_at=AT - timedelta(days=3), created_at=created)
    for contact in (with_case, boundary):
        db.session.add(
            Activity(
                contact_id=contact.id,
                kind="support_case",
                occurred_at=datetime(2019, 12, 20, tzinfo=UTC),
                author="test",
            )
        )
    db.session.commit()

    months = sections.purge_forecast(AT)
    assert len(months) == 25
    by_month = {m.month: (m.contacts, m.activities) for m in months}
    assert by_month["due now"] == (1, 0)
    assert by_month["2026-12"] == (0, 2)  # last kept days 2026-12-20 and 2026-12-30
    assert by_month["2027-01"] == (3, 0)  # deleted on 2027-01-01
    assert by_month["2028-01"] == (1, 0)
    assert sum(m.contacts for m in months) == 5
    assert months[-1].month == "2028-11"

    # The same numbers as the retention preview of a run on each month's last day.
    for day, through in ((date(2027, 1, 31), 4), (date(2028, 1, 31), 5)):
        contacts = sum(o.count for o in retention.preview(day).outcomes if o.rule.is_contact_rule)
        assert contacts == through


# Privacy requests ------------------------------------------------------------------------


def test_privacy_requests_open_closed_and_overdue(app_ctx) -> None:
    def request(status: str, due: datetime | None, extended: datetime | None = None) -> None:
        db.session.add(
            PrivacyRequest(
                kind="access",
                status=status,
                received_via="web",
                due_at=due,
                extended_until=extended,
                verified_at=due - timedelta(days=30) if due else None,
            )
        )

    request("awaiting_admin", AT - timedelta(days=1))  # overdue
    request("awaiting_admin", AT + timedelta(days=5))
    request("awaiting_admin", AT - timedelta(days=1), extended=AT + timedelta(days=40))
    request("pending_verification", None)
    request("completed", AT - timedelta(days=10))
    request("refused", AT - timedelta(days=10))
    db.session.commit()
    counts = sections.privacy_request_counts(AT)
    assert (counts.open, counts.overdue, counts.closed) == (4, 1, 2)


# The page and its charts ---------------------------------------------------------------


@pytest.fixture
def counted(app_ctx) -> None:
    for index in range(3):
        record(
            _contact(f"objected{index}@example.se"), EventKind.OBJECTED, actor=ACTOR, source="api"
        )
    db.session.commit()
    snapshots.refresh(datetime.now(UTC))


def test_the_page_shows_every_section_with_its_table(app, counted) -> None:
    page = client_as(app, "marketing").get("/staff/dashboard")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    for table in ("reach", "weekly", "retention", "requests"):
        assert f'id="{table}-table"' in html
        assert f'/staff/dashboard/charts/{table}.svg"' in html
    assert "<caption id=" in html and 'scope="col"' in html and 'scope="row"' in html
    row = html.split('data-topic="newsletter" data-channel="email"', 1)[1].split("</tr>", 1)[0]
    assert 'data-reason="objection">3<' in row
    assert 'data-reason="reachable">0<' in row
    assert "Counted at" in html
    assert "<script" not in html


def test_a_section_never_counted_says_so(app, app_ctx) -> None:
    html = client_as(app, "dpo").get("/staff/dashboard").get_data(as_text=True)
    assert "Not counted yet" in html
    assert "No campaign has been sent yet." in html


def test_each_chart_is_an_svg_image_with_no_script(app, counted) -> None:
    client = client_as(app, "admin")
    for name in ("reach", "weekly", "campaigns", "retention", "requests"):
        answer = client.get(f"/staff/dashboard/charts/{name}.svg")
        assert answer.status_code == 200
        assert answer.mimetype == "image/svg+xml"
        assert answer.headers["Content-Security-Policy"] == CHART_POLICY
        assert answer.headers["Cache-Control"] == "no-store"
        body = answer.get_data(as_text=True)
        assert "<svg" in body and "<script" not in body
    assert client.get("/staff/dashboard/charts/contacts.svg").status_code == 404


def test_sales_may_not_see_the_dashboard(app, counted) -> None:
    client = client_as(app, "sales")
    assert client.get("/staff/dashboard").status_code == 403
    assert client.get("/staff/dashboard/charts/reach.svg").status_code == 403
    assert "/staff/dashboard" not in client.get("/staff/").get_data(as_text=True)


def test_the_page_in_swedish(app, counted) -> None:
    client = client_as(app, "marketing")
    client.post("/staff/language", data={"lang": "sv", "next": "/staff/dashboard"})
    html = client.get("/staff/dashboard").get_data(as_text=True)
    assert "<h1>Översikt</h1>" in html
    assert "Nåbar målgrupp" in html and "invändning" in html
    chart = client.get("/staff/dashboard/charts/weekly.svg").get_data(as_text=True)
    assert "Begärda samtycken" in chart


def test_the_whole_dashboard_is_built_without_the_page(app_ctx, counted) -> None:
    board = build_dashboard(datetime.now(UTC))
    assert board.reach_at is not None and len(board.purges) == 25 and len(board.weeks) == 12
    assert sum(r.count("objection") for r in board.reach) == 3 * len(board.reach)
