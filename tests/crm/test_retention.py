"""Retention: the default rules remove nothing early and leave nothing late (R13-R15)."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from crm import retention
from crm.models import Activity, AnonymisedActivity, RetentionRun
from crm.retention import Period, RetentionPolicy, Rule
from extensions import db
from kernel.access import Actor
from kernel.errors import Conflict
from tests.crm.retention_helpers import add_contact, at, day, exists, snapshot

STAFF = Actor(kind="user", name="anna@example.com", role="admin")


# The rule arithmetic ----------------------------------------------------------------


def test_default_rule_deletes_a_contact_last_seen_2019_03_15_on_new_year_2027(app_ctx) -> None:
    rule = next(r for r in retention.current_retention_policy().rules if r.name == "crm-contacts")
    assert rule.last_kept_day(at("2019-03-15T09:00:00")) == day("2026-12-31")
    assert rule.purge_on(at("2019-03-15T09:00:00")) == day("2027-01-01")


def _rule(years: int, months: int, days: int, rounding: bool) -> Rule:
    return Rule(
        name="r",
        category="contact",
        period=Period(years, months, days),
        counts_from="last_interaction",
        round_to_year_end=rounding,
        action="delete",
    )


@given(
    anchor=st.dates(min_value=date(1990, 1, 1), max_value=date(2060, 12, 31)),
    as_of=st.dates(min_value=date(1990, 1, 1), max_value=date(2080, 12, 31)),
    years=st.integers(0, 12),
    months=st.integers(0, 13),
    days=st.integers(0, 400),
    rounding=st.booleans(),
)
def test_the_cutoff_a_run_uses_agrees_with_each_records_purge_date(
    anchor: date, as_of: date, years: int, months: int, days: int, rounding: bool
) -> None:
    # The database compares against one cutoff; it must select exactly the
    # records whose own purge date has come (leap days and month ends included).
    rule = _rule(years, months, days, rounding)
    assert (anchor <= rule.latest_due_anchor_day(as_of)) == (rule.purge_on(anchor) <= as_of)


# Moving time across every boundary -------------------------------------------------

BOUNDARIES = [
    # (last interaction, first day a run deletes the contact)
    ("2019-03-15T09:00:00+00:00", "2027-01-01"),
    ("2019-01-01T00:00:00+00:00", "2027-01-01"),
    ("2019-12-31T23:59:59+00:00", "2027-01-01"),
    ("2020-01-01T00:00:00+00:00", "2028-01-01"),
    # Leap days: 2020-02-29 plus seven years is 2027-02-28, still in 2027.
    ("2020-02-29T12:00:00+00:00", "2028-01-01"),
    ("2016-02-29T23:59:00+00:00", "2024-01-01"),
    # Time zones around midnight UTC on 31 December: the UTC day decides.
    ("2020-01-01T00:30:00+01:00", "2027-01-01"),  # 2019-12-31 23:30 UTC
    ("2019-12-31T23:30:00-01:00", "2028-01-01"),  # 2020-01-01 00:30 UTC
    ("2019-12-31T23:59:59.999999+00:00", "2027-01-01"),
]


@pytest.mark.parametrize(("last_interaction", "purge_on"), BOUNDARIES)
def test_a_contact_survives_the_day_before_its_purge_date_and_goes_on_it(
    app_ctx, last_interaction: str, purge_on: str
) -> None:
    contact = add_contact(
        "lena@kund.se",
        last_interaction=last_interaction,
        activities=[("call", last_interaction, "Asked for a quote")],
    )
    db.session.commit()
    assert retention.purge_outlook(contact).purge_on == day(purge_on)

    retention.run(day(purge_on) - timedelta(days=1), started_by="test")
    assert exists("lena@kund.se"), "removed early"
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Activity)) == 1

    retention.run(day(purge_on), started_by="test")
    assert not exists("lena@kund.se"), "survived late"
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Activity)) == 0


def test_a_contact_that_never_interacted_counts_from_its_creation(app_ctx) -> None:
    add_contact("import@lista.se", created="2018-06-01T10:00:00")
    db.session.commit()
    retention.run(day("2025-12-31"), started_by="test")
    assert exists("import@lista.se")
    retention.run(day("2026-01-01"), started_by="test")
    assert not exists("import@lista.se")


@pytest.mark.parametrize(
    ("last_interaction", "anonymised_on"),
    [
        ("2019-03-15T09:00:00+00:00", "2026-03-16"),
        # 2020-02-29 + 7 years is 2027-02-28: kept through that day.
        ("2020-02-29T09:00:00+00:00", "2027-03-01"),
        ("2020-03-01T00:30:00+01:00", "2027-03-01"),  # 2020-02-29 23:30 UTC
    ],
)
def test_support_cases_are_anonymised_seven_years_after_the_last_interaction(
    app_ctx, last_interaction: str, anonymised_on: str
) -> None:
    add_contact(
        "kalle@kund.se",
        last_interaction=last_interaction,
        activities=[
            ("support_case", "2018-05-20T08:00:00", "Kalle's gateway reboots nightly"),
            ("call", last_interaction, "Follow-up"),
        ],
    )
    db.session.commit()
    retention.run(day(anonymised_on) - timedelta(days=1), started_by="test")
    assert db.session.scalar(sa.select(sa.func.count()).select_from(AnonymisedActivity)) == 0

    retention.run(day(anonymised_on), started_by="test")
    kinds = set(db.session.scalars(sa.select(Activity.kind)))
    assert kinds == {"call"}, "the support case is no longer linked to the contact"
    left = db.session.execute(sa.select(AnonymisedActivity)).scalar_one()
    # General support information stays: what it was and the month, nothing personal.
    assert (left.kind, left.occurred_month, left.rule) == (
        "support_case",
        day("2018-05-01"),
        "support-cases",
    )
    assert exists("kalle@kund.se"), "the contact itself stays until the end of the year"


def test_marketing_email_sent_to_a_contact_does_not_keep_its_data_alive(app_ctx) -> None:
    from crm.services import log_activity

    contact = add_contact("nils@kund.se")
    db.session.commit()
    log_activity(STAFF, contact.id, "meeting", at("2018-04-02T10:00:00"), "Met at the fair")
    log_activity(STAFF, contact.id, "marketing_email", at("2026-11-01T10:00:00"), "Newsletter")
    assert retention.purge_outlook(contact).purge_on == day("2026-01-01")
    # A form submission, by contrast, is an interaction: it moves the date.
    other = add_contact("olle@kund.se")
    db.session.commit()
    log_activity(STAFF, other.id, "form_submission", at("2026-11-01T10:00:00"), None)
    assert retention.purge_outlook(other).purge_on == day("2034-01-01")

    retention.run(day("2026-01-01"), started_by="test")
    assert not exists("nils@kund.se")
    assert exists("olle@kund.se")


# Exclusions ---------------------------------------------------------------------------


def test_a_legal_hold_keeps_a_due_contact_and_the_preview_says_why(app_ctx) -> None:
    held = add_contact(
        "tvist@kund.se",
        last_interaction="2015-01-10T10:00:00",
        legal_hold="Dispute over invoice 2015-118",
        activities=[("support_case", "2015-01-10T10:00:00", "Claim")],
    )
    add_contact("due@kund.se", last_interaction="2015-01-10T10:00:00")
    db.session.commit()

    result = retention.preview(day("2027-01-01"))
    contacts = next(o for o in result.outcomes if o.rule.name == "crm-contacts")
    assert [row.contact_id for row in contacts.items] == [held.id + 1]
    assert [(row.contact_id, reason) for row, reason in contacts.excluded] == [
        (held.id, "legal hold: Dispute over invoice 2015-118")
    ]
    cases = next(o for o in result.outcomes if o.rule.name == "support-cases")
    assert cases.count == 0 and cases.excluded_count == 1

    record = retention.run(day("2027-01-01"), started_by="test")
    assert exists("tvist@kund.se") and not exists("due@kund.se")
    assert record.counts["crm-contacts"] == {"deleted": 1, "anonymised": 0, "excluded": 1}
    assert record.counts["support-cases"]["excluded"] == 1
    assert retention.purge_outlook(held).excluded_because.startswith("legal hold")


def test_a_registered_exclusion_source_keeps_its_contacts(app_ctx) -> None:
    from kernel.signals import collect_retention_exclusions

    waiting = add_contact("begaran@kund.se", last_interaction="2015-01-10T10:00:00")
    db.session.commit()

    def pending_requests(sender, contact_ids):  # type: ignore[no-untyped-def]
        return {waiting.id: "pending rights request (access)"} if waiting.id in contact_ids else {}

    collect_retention_exclusions.connect(pending_requests)
    try:
        retention.run(day("2027-01-01"), started_by="test")
        assert exists("begaran@kund.se")
        assert (
            retention.purge_outlook(waiting).excluded_because == "pending rights request (access)"
        )
    finally:
        collect_retention_exclusions.disconnect(pending_requests)


# The lock and the record --------------------------------------------------------------


def test_a_run_is_recorded_with_counts_per_rule_and_who_started_it(app_ctx) -> None:
    add_contact(
        "a@kund.se",
        last_interaction="2019-03-01T10:00:00",
        activities=[("support_case", "2018-02-01T10:00:00", "Broken")],
    )
    db.session.commit()
    record = retention.run(day("2026-06-01"), started_by="cli:flask")
    assert record.status == "completed"
    assert record.started_by == "cli:flask"
    assert record.ended_at >= record.started_at
    assert record.counts == {
        "support-cases": {"deleted": 0, "anonymised": 1, "excluded": 0},
        "crm-contacts": {"deleted": 0, "anonymised": 0, "excluded": 0},
    }


def test_only_one_run_at_a_time(app_ctx) -> None:
    import os
    import socket

    from crm.models import RetentionLock
    from kernel.timestamps import utcnow

    # Another live process (our parent) holds the lock and keeps beating.
    db.session.add(
        RetentionLock(
            name="retention",
            run_id=999,
            holder_host=socket.gethostname(),
            holder_pid=os.getppid(),
            heartbeat_at=utcnow(),
        )
    )
    db.session.commit()
    add_contact("due@kund.se", last_interaction="2015-01-10T10:00:00")
    db.session.commit()
    with pytest.raises(Conflict) as caught:
        retention.run(day("2027-01-01"), started_by="test")
    assert caught.value.code == "retention_running"
    assert exists("due@kund.se")
    assert db.session.scalar(sa.select(sa.func.count()).select_from(RetentionRun)) == 0


def test_a_lock_that_stopped_beating_is_taken_over(app, app_ctx) -> None:
    from crm.models import RetentionLock
    from kernel.timestamps import utcnow

    stuck = RetentionRun(as_of=day("2026-01-01"), started_by="other-host", status="running")
    db.session.add(stuck)
    db.session.flush()
    db.session.add(
        RetentionLock(
            name="retention",
            run_id=stuck.id,
            holder_host="another-host",
            holder_pid=1,
            heartbeat_at=utcnow()
            - timedelta(seconds=app.config["RETENTION_LOCK_STALE_SECONDS"] + 5),
        )
    )
    add_contact("due@kund.se", last_interaction="2015-01-10T10:00:00")
    db.session.commit()
    record = retention.run(day("2027-01-01"), started_by="test")
    assert record.status == "completed"
    assert not exists("due@kund.se")
    assert db.session.get(RetentionRun, stuck.id, populate_existing=True).status == "interrupted"
    lock = db.session.get(RetentionLock, "retention", populate_existing=True)
    assert lock.run_id is None, "released after the run"


# Crash and resume -------------------------------------------------------------------------


def build_population() -> None:
    for n in range(23):
        add_contact(
            f"old{n:02d}@kund.se",
            last_interaction=f"2017-0{1 + n % 9}-1{n % 10}T10:00:00",
            activities=[
                ("call", "2016-05-05T10:00:00", f"Call {n}"),
                ("support_case", f"2016-0{1 + n % 9}-03T10:00:00", f"Case {n}"),
            ],
        )
    for n in range(7):
        add_contact(
            f"recent{n}@kund.se",
            last_interaction="2024-02-02T10:00:00",
            activities=[("support_case", "2017-01-01T10:00:00", f"Case r{n}")],
        )
    add_contact(
        "held@kund.se",
        last_interaction="2016-01-01T10:00:00",
        legal_hold="Tax audit",
        activities=[("support_case", "2016-01-01T10:00:00", "Held case")],
    )
    db.session.commit()


def test_a_run_that_fails_between_batches_resumes_to_the_same_end_state(app, app_ctx) -> None:
    from tests.crm.retention_helpers import wipe

    build_population()
    retention.run(day("2026-01-01"), started_by="test", batch_size=4)
    expected = snapshot()
    assert len(expected["contacts"]) == 8  # 7 recent, 1 held
    wipe()

    build_population()

    class Crash(Exception):
        pass

    def crash_after_three(run: RetentionRun) -> None:
        if run.batches == 3:
            raise Crash("power cut")

    with pytest.raises(Crash):
        retention.run(
            day("2026-01-01"), started_by="test", batch_size=4, after_batch=crash_after_three
        )
    failed = db.session.scalars(sa.select(RetentionRun)).one()
    assert failed.status == "failed" and "power cut" in failed.error
    halfway = snapshot()
    assert halfway != expected, "the crash happened mid-way"

    record = retention.run(day("2026-01-01"), started_by="test", batch_size=4)
    assert record.status == "completed"
    assert snapshot() == expected


def test_suppression_is_never_a_retention_category() -> None:
    with pytest.raises(RuntimeError, match="never subject to retention"):
        RetentionPolicy.from_mapping(
            {
                "retention": {
                    "rules": [
                        {
                            "name": "x",
                            "category": "suppression",
                            "years": 1,
                            "counts_from": "record_date",
                        }
                    ]
                }
            }
        )


@pytest.mark.parametrize(
    "bad",
    [
        {"category": "contact", "counts_from": "record_date"},
        {"category": "contact", "counts_from": "last_interaction", "action": "anonymise"},
        {"category": "activity", "counts_from": "record_date"},
        {"category": "activity", "counts_from": "record_date", "kinds": ["telegram"]},
        {"category": "server_log", "counts_from": "record_date"},
        {"category": "contact", "counts_from": "last_interaction", "years": -1},
        {"category": "contact", "counts_from": "last_interaction", "action": "shred"},
        {"category": "contact", "counts_from": "last_interaction", "years": 5000},
    ],
)
def test_a_malformed_rule_stops_the_service_from_starting(bad: dict) -> None:
    with pytest.raises(RuntimeError, match="malformed"):
        RetentionPolicy.from_mapping({"retention": {"rules": [{"name": "bad", **bad}]}})


def test_a_run_that_lost_its_lock_applies_no_further_batch(app_ctx) -> None:
    from crm.models import RetentionLock

    for n in range(6):
        add_contact(f"due{n}@kund.se", last_interaction="2015-01-10T10:00:00")
    db.session.commit()

    def stolen(run: RetentionRun) -> None:
        # It stalled past the stale limit and another host took over.
        db.session.execute(sa.update(RetentionLock).values(run_id=run.id + 1000))
        db.session.commit()

    with pytest.raises(Conflict) as caught:
        retention.run(day("2027-01-01"), started_by="test", batch_size=2, after_batch=stolen)
    assert caught.value.code == "retention_lock_lost"
    left = sorted(
        e for e in ("due0", "due1", "due2", "due3", "due4", "due5") if exists(f"{e}@kund.se")
    )
    assert left == ["due2", "due3", "due4", "due5"], "only the batch before the theft"
    lock = db.session.get(RetentionLock, "retention", populate_existing=True)
    assert lock.run_id is not None, "the new holder keeps its lock"
