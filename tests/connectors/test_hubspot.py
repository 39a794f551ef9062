"""The HubSpot connector end to end against the stand-in: the real client
library, the real services, the real change feed (issue 24's "done when")."""

from __future__ import annotations

import json
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from connectors import sync
from connectors.base import RetryPolicy
from connectors.models import ConnectorDeletion, ConnectorRecord, ConnectorState
from consent import services as consent
from consent.rights import erase_contact
from crm import external_ids, retention
from crm.models import Activity, Company, Contact
from extensions import db
from kernel.access import CLI_ACTOR
from mailing.models import OutboxMessage
from tests.conftest import count_rows
from tests.connectors.conftest import EVENTS, NEWSLETTER, contact_of, run_sync
from tests.connectors.hubspot_standin import HubSpotStandIn
from tests.crm.retention_helpers import day
from tests.staff.helpers import client_as

CALL_AT = "2026-03-04T10:15:00Z"


def run(app: Any, waits: list[float] | None = None) -> sync.Run:
    return run_sync(app, "hubspot", waits)  # type: ignore[no-any-return]


def anna(hubspot: HubSpotStandIn, *, customer: bool = True) -> tuple[str, str]:
    """A contact of a customer company in HubSpot, with a call logged."""
    company = hubspot.add(
        "companies",
        {
            "name": "Kund AB",
            "country": "Sweden",
            "lifecyclestage": "customer" if customer else "lead",
            "hs_lifecyclestage_customer_date": "2024-05-01T00:00:00Z",
        },
    )
    contact = hubspot.add(
        "contacts",
        {
            "email": "Anna.Berg@Kund.se",
            "firstname": "Anna",
            "lastname": "Berg",
            "country": "SE",
            "hs_language": "sv",
        },
        {"companies": [company]},
    )
    call = hubspot.add("calls", {"hs_timestamp": CALL_AT}, {"contacts": [contact]})
    return contact, call


def the_contact(app: Any, remote_id: str) -> Contact | None:
    return contact_of(app, "hubspot", remote_id)  # type: ignore[no-any-return]


def test_a_contact_with_a_call_arrives_with_its_external_id_and_last_interaction(
    app, hubspot
) -> None:
    remote, _ = anna(hubspot)
    assert run(app).outcome == "done"
    contact = the_contact(app, remote)
    assert contact is not None
    assert contact.email == "anna.berg@kund.se" and contact.name == "Anna Berg"
    # A call logged in HubSpot since: the next sync moves the last interaction.
    time.sleep(0.002)  # HubSpot's times have milliseconds: later than the contact's creation here
    now = datetime.now(UTC)
    called_at = now.replace(microsecond=now.microsecond // 1000 * 1000)
    hubspot.add("calls", {"hs_timestamp": called_at.isoformat()}, {"contacts": [remote]})
    assert run(app).outcome == "done"
    contact = the_contact(app, remote)
    assert contact.last_interaction_at == called_at
    with app.app_context():
        company = db.session.get(Company, contact.company_id)
        assert company is not None and company.country == "SE"
        assert company.customer_since == date(2024, 5, 1)
        assert external_ids.for_companies([company.id])[company.id] == {
            "hubspot": company_ids(hubspot)
        }
        kinds = db.session.scalars(
            sa.select(Activity.kind).where(Activity.contact_id == contact.id)
        ).all()
        assert kinds == ["call", "call"]
        state = db.session.get(ConnectorState, "hubspot")
        assert state.items_in == 3 and state.last_success_at is not None and state.errors == 0


def test_a_call_older_than_the_contact_here_counts_at_its_date_when_hubspot_brought_it(
    app, hubspot
) -> None:
    """The contact came here from HubSpot: its calls there are its own
    history, so the retention clock counts from the last one, not from the
    copy's creation here (docs/retention.md, "History from a CRM")."""
    remote, _ = anna(hubspot)
    run(app)
    contact = the_contact(app, remote)
    assert contact.last_interaction_at == datetime(2026, 3, 4, 10, 15, tzinfo=UTC)
    assert contact.last_interaction_at < contact.created_at
    with app.app_context():
        assert (
            db.session.scalar(
                sa.select(sa.func.count())
                .select_from(Activity)
                .where(Activity.contact_id == contact.id)
            )
            == 1
        )


def company_ids(hubspot: HubSpotStandIn) -> str:
    return next(iter(hubspot.objects["companies"]))


def test_the_customer_basis_is_written_as_a_subscription_status_with_its_legal_basis(
    app, hubspot
) -> None:
    anna(hubspot)
    run(app)
    status = hubspot.statuses[("anna.berg@kund.se", EVENTS)]
    assert status["status"] == "SUBSCRIBED"
    assert status["legalBasis"] == "LEGITIMATE_INTEREST_CLIENT"
    assert "customer" in status["legalBasisExplanation"].lower()
    contact = next(iter(hubspot.objects["contacts"].values()))
    assert contact["properties"]["consent_may_market"] == "true"
    assert contact["properties"]["consent_explanation"]


def test_an_objection_here_appears_as_not_subscribed_with_the_legal_basis(app, hubspot) -> None:
    remote, _ = anna(hubspot)
    run(app)
    contact = the_contact(app, remote)
    with app.app_context():
        consent.record_objection(CLI_ACTOR, contact.id)
    run(app)
    status = hubspot.statuses[("anna.berg@kund.se", EVENTS)]
    assert status["status"] == "NOT_SUBSCRIBED"
    # The "no" names the basis it ends, and why.
    assert status["legalBasis"] == "LEGITIMATE_INTEREST_CLIENT"
    assert "objected" in status["legalBasisExplanation"]
    properties = hubspot.objects["contacts"][remote]["properties"]
    assert properties["consent_may_market"] == "false"
    assert "objected" in properties["consent_explanation"]


def test_what_was_written_is_kept_whole_however_many_topics_are_mapped(app, hubspot) -> None:
    # What was last written per topic is kept as JSON on the status record;
    # cut at 200 characters (five or six topics) it was no JSON any more, and
    # every later decision write for that contact failed.
    remote, _ = anna(hubspot)
    run(app)
    many = {f"topic-{n}": "LEGITIMATE_INTEREST_OTHER" for n in range(8)}
    with app.app_context():
        status = db.session.get(ConnectorRecord, ("hubspot", sync.STATUS, remote))
        status.fingerprint = json.dumps({**json.loads(status.fingerprint), **many})
        db.session.commit()
        consent.record_objection(CLI_ACTOR, the_contact(app, remote).id)
    assert run(app).outcome == "done"
    with app.app_context():
        status = db.session.get(ConnectorRecord, ("hubspot", sync.STATUS, remote))
        assert many.items() <= json.loads(status.fingerprint).items()
    assert hubspot.statuses[("anna.berg@kund.se", EVENTS)]["status"] == "NOT_SUBSCRIBED"


def test_a_status_record_cut_before_migration_0043_does_not_stop_the_decisions(
    app, hubspot
) -> None:
    remote, _ = anna(hubspot)
    run(app)
    with app.app_context():
        status = db.session.get(ConnectorRecord, ("hubspot", sync.STATUS, remote))
        status.fingerprint = '{"events": "LEGITIMATE_INTEREST_CLIE'
        db.session.commit()
        consent.record_objection(CLI_ACTOR, the_contact(app, remote).id)
    result = run(app)
    assert result.outcome == "done" and not result.skipped
    assert hubspot.statuses[("anna.berg@kund.se", EVENTS)]["status"] == "NOT_SUBSCRIBED"


def test_a_second_sync_changes_nothing(app, hubspot) -> None:
    anna(hubspot)
    run(app)
    before = count_rows(app)
    writes = len(hubspot.writes())
    result = run(app)
    assert result.outcome == "done" and result.items_in == 0 and result.items_out == 0
    assert count_rows(app) == before
    assert len(hubspot.writes()) == writes


def test_a_retention_purge_here_deletes_the_activities_in_hubspot(app, hubspot) -> None:
    remote, call = anna(hubspot)
    old = hubspot.add("calls", {"hs_timestamp": "2020-01-01T09:00:00Z"}, {"contacts": [remote]})
    run(app)
    policy = retention.RetentionPolicy.from_mapping(
        {
            "retention": {
                "rules": [
                    {
                        "name": "old-calls",
                        "category": "activity",
                        "kinds": ["call"],
                        "years": 2,
                        "counts_from": "record_date",
                    }
                ]
            }
        }
    )
    with app.app_context():
        retention.run(day("2026-06-01"), started_by="test", policy=policy)
    run(app)
    assert hubspot.objects["calls"][old]["archived"] is True
    assert hubspot.objects["calls"][call]["archived"] is False
    with app.app_context():
        done = db.session.scalars(sa.select(ConnectorDeletion)).all()
        assert [(d.object_type, d.remote_id, d.reason, d.done_at is not None) for d in done] == [
            ("calls", old, "activities.purged", True)
        ]


def test_an_erasure_here_deletes_the_contact_and_its_activities_in_hubspot(app, hubspot) -> None:
    remote, call = anna(hubspot)
    run(app)
    contact = the_contact(app, remote)
    with app.app_context():
        erase_contact(CLI_ACTOR, contact.id)
    result = run(app)
    assert result.outcome == "done"
    assert hubspot.objects["contacts"][remote]["archived"] is True
    assert hubspot.objects["calls"][call]["archived"] is True
    # ... and the next sync does not bring the person back (their HubSpot copy is gone).
    run(app)
    assert the_contact(app, remote) is None


def test_429_and_5xx_for_a_while_lose_nothing(app, hubspot) -> None:
    anna(hubspot)
    hubspot.fail(429, times=2, prefix="/crm/v3/objects/contacts")
    hubspot.fail(503, times=1, prefix="/crm/v3/objects/calls")
    waits: list[float] = []
    result = run(app, waits)
    assert result.outcome == "done"
    # HubSpot's secondly limit was spent: wait a second; then the doubling backoff.
    assert waits == [1.0, 1.0, 0.5]
    contact = the_contact(app, next(iter(hubspot.objects["contacts"])))
    with app.app_context():
        assert db.session.scalars(
            sa.select(Activity.kind).where(Activity.contact_id == contact.id)
        ).all() == ["call"]


def test_a_crm_down_longer_than_the_retries_resumes_at_the_next_turn(app, hubspot) -> None:
    anna(hubspot)
    hubspot.page_size_cap = 1
    second = hubspot.add("contacts", {"email": "bo@kund.se"})
    # The first page is written, then HubSpot answers 500 for longer than the retries.
    hubspot.faults.clear()
    original = hubspot.answer

    def failing_after_first_page(method, target, body, auth):  # type: ignore[no-untyped-def]
        if (
            "after=" in target
            and "/contacts" in target
            and hubspot.calls_to("GET", "/crm/v3/objects/contacts") < 20
        ):
            hubspot.requests.append((method, target.split("?")[0]))
            return (
                500,
                {},
                {
                    "status": "error",
                    "message": "down",
                    "correlationId": "x",
                    "category": "INTERNAL_ERROR",
                },
            )
        return original(method, target, body, auth)

    hubspot.answer = failing_after_first_page  # type: ignore[method-assign]
    result = run(app)
    assert result.outcome == "unavailable"
    with app.app_context():
        state = db.session.get(ConnectorState, "hubspot")
        assert state.cursors.get("contacts") == second
        assert state.errors == 1 and "HTTP 500" in state.last_error
        assert state.last_success_at is None
    hubspot.answer = original  # type: ignore[method-assign]
    assert run(app).outcome == "done"
    assert the_contact(app, second) is not None


def test_a_revoked_token_stops_the_connector_shows_why_and_writes_nothing(app, hubspot) -> None:
    anna(hubspot)
    hubspot.token = None  # revoked in HubSpot
    before = count_rows(app)
    result = run(app)
    assert result.outcome == "revoked"
    after = count_rows(app)
    assert {k: v for k, v in after.items() if k != "connector_state" and v != before.get(k)} == {}
    with app.app_context():
        state = db.session.get(ConnectorState, "hubspot")
        assert "refused the credentials" in state.stopped_because
    # Stopped: the next turn calls nothing, until an admin resumes it.
    calls = len(hubspot.requests)
    assert run(app).outcome == "stopped"
    assert len(hubspot.requests) == calls
    page = client_as(app, "admin").get("/staff/connectors")
    assert page.status_code == 200 and b"refused the credentials" in page.data


def test_an_invalid_record_is_skipped_with_its_reason(app, hubspot) -> None:
    bad_mail = hubspot.add("contacts", {"email": "not-an-address"})
    bad_country = hubspot.add("contacts", {"email": "eva@kund.se", "country": "Atlantis"})
    good = hubspot.add("contacts", {"email": "ok@kund.se"})
    result = run(app)
    assert result.outcome == "done"
    assert the_contact(app, good) is not None
    assert the_contact(app, bad_mail) is None and the_contact(app, bad_country) is None
    with app.app_context():
        report = db.session.get(ConnectorState, "hubspot").report
    reasons = {r["id"]: r["reason"] for r in report}
    assert set(reasons) == {bad_mail, bad_country}
    assert "Unknown country" in reasons[bad_country]
    assert "email" in reasons[bad_mail].lower()
    # Reported once: the next pass finds them unchanged and says nothing more.
    run(app)
    with app.app_context():
        assert len(db.session.get(ConnectorState, "hubspot").report) == 2


def test_text_no_column_can_hold_skips_the_record_and_not_the_page(app, hubspot) -> None:
    # PostgreSQL cannot store a NUL, nor 5,000 characters in a name: each
    # failed the whole page, retried every turn, and the connector was stuck.
    nul = hubspot.add("contacts", {"email": "nul@kund.se", "firstname": "A\x00<b>"})
    long = hubspot.add("contacts", {"email": "lang@kund.se", "lastname": "x" * 5000})
    nul_mail = hubspot.add("contacts", {"email": "a\x00@kund.se"})
    firm = hubspot.add("companies", {"name": "Kund\x00 AB", "lifecyclestage": "customer"})
    in_firm = hubspot.add("contacts", {"email": "firma@kund.se"}, {"companies": [firm]})
    good = hubspot.add(
        "contacts", {"email": "ok@kund.se", "firstname": "Åsa", "lastname": "<b>Öberg</b>"}
    )
    result = run(app)
    assert result.outcome == "done"
    good_contact = the_contact(app, good)
    # Markup in a name is the person's data, kept as written (pages escape it).
    assert good_contact is not None and good_contact.name == "Åsa <b>Öberg</b>"
    assert [the_contact(app, r) for r in (nul, long, nul_mail, in_firm)] == [None] * 4
    with app.app_context():
        report = db.session.get(ConnectorState, "hubspot").report
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Company)) == 0
    reasons = {r["id"]: r["reason"] for r in report}
    assert set(reasons) == {nul, long, nul_mail, in_firm}
    assert "invalid characters before the @-sign: U+0000" in reasons[nul_mail]
    assert reasons[nul] == "The name contains a NUL byte; it cannot be stored."
    assert reasons[long] == "The name is longer than 200 characters; it cannot be stored."
    assert reasons[in_firm] == "The company name contains a NUL byte; it cannot be stored."
    # A known contact whose phone becomes unstorable keeps what it had.
    hubspot.touch("contacts", good, {"phone": "+46 8 123\x0745"})
    run(app)
    with app.app_context():
        report = db.session.get(ConnectorState, "hubspot").report
        contact = db.session.get(Contact, good_contact.id)
        assert contact is not None and contact.phone is None
    assert report[-1]["id"] == good
    assert report[-1]["reason"].startswith("The phone contains a control character (U+0007)")
    # Reported once: unchanged since, they are not read again.
    run(app)
    with app.app_context():
        assert len(db.session.get(ConnectorState, "hubspot").report) == 5


def test_a_record_whose_id_cannot_be_held_is_skipped_and_not_the_page(app, hubspot) -> None:
    # A faulty CRM's ids: written to connector_record (200 characters) and
    # compared in the page's queries, where PostgreSQL refused them.
    long = hubspot.add("contacts", {"email": "lang-id@kund.se"})
    hubspot.objects["contacts"][long]["id"] = "9" * 250
    contact, _ = anna(hubspot)
    odd_call = hubspot.add("calls", {"hs_timestamp": CALL_AT}, {"contacts": [contact]})
    hubspot.objects["calls"][odd_call]["id"] = "7" * 250
    # A call naming, beside Anna, a contact whose id cannot be held: Anna's.
    hubspot.add("calls", {"hs_timestamp": CALL_AT}, {"contacts": ["8" * 250, contact]})
    result = run(app)
    assert result.outcome == "done"
    anna_here = the_contact(app, contact)
    assert anna_here is not None and anna_here.last_interaction_at is not None
    with app.app_context():
        report = db.session.get(ConnectorState, "hubspot").report
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Contact)) == 1
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Activity)) == 2
    reasons = {(r["object"], r["id"]): r["reason"] for r in report}
    assert set(reasons) == {("contacts", "9" * 100), ("calls", "7" * 100)}
    assert all(
        r.startswith("The record's id cannot be held: An external id") for r in reasons.values()
    )


def test_a_deletion_hubspot_refuses_for_now_is_retried_and_never_brings_the_person_back(
    app, hubspot
) -> None:
    remote, _ = anna(hubspot)
    run(app)
    contact = the_contact(app, remote)
    with app.app_context():
        erase_contact(CLI_ACTOR, contact.id)
    # HubSpot's copy changes meanwhile, and its deletes answer 503 for longer than the retries.
    hubspot.objects["contacts"][remote]["properties"]["phone"] = "+46 70 123 45 67"
    hubspot.fail(503, times=8, prefix="/crm/v3/objects/calls/", method="DELETE")
    result = run(app)
    assert result.outcome == "unavailable"
    assert the_contact(app, remote) is None
    with app.app_context():
        owed = db.session.scalars(
            sa.select(ConnectorDeletion)
            .where(ConnectorDeletion.done_at.is_(None))
            .order_by(ConnectorDeletion.id)
        ).all()
        # The call's deletion was tried and failed; the contact's waits its turn.
        # The error kept names the status only: a CRM's message can name the
        # erased person ("Your attempt to delete Anna Berg ...").
        assert [(d.object_type, d.attempts, d.last_error) for d in owed] == [
            ("calls", 1, "CrmUnavailable: HTTP 503"),
            ("contacts", 0, None),
        ]
    page = client_as(app, "admin").get("/staff/connectors").get_data(as_text=True)
    assert "contact.erased" in page
    hubspot.faults.clear()
    assert run(app).outcome == "done"
    assert hubspot.objects["contacts"][remote]["archived"] is True
    assert the_contact(app, remote) is None
    with app.app_context():
        assert (
            db.session.scalar(
                sa.select(sa.func.count())
                .select_from(ConnectorDeletion)
                .where(ConnectorDeletion.done_at.is_(None))
            )
            == 0
        )


# Consent seen in HubSpot ----------------------------------------------------------------

WORDING = "Yes, send me the newsletter and event invitations from Kund AB."


def _consenting(hubspot: HubSpotStandIn, monkeypatch: Any, app: Any, email: str) -> str:
    monkeypatch.setitem(app.config, "HUBSPOT_CONSENT_POLICY_VERSION", "2026-01")
    remote = hubspot.add("contacts", {"email": email, "country": "SE"})
    for subscription in (NEWSLETTER, EVENTS):
        hubspot.set_status(email, subscription, "SUBSCRIBED", "CONSENT_WITH_NOTICE", WORDING)
    return remote


def _decisions(app: Any, remote: str) -> dict[str, str]:
    with app.app_context():
        contact = db.session.get(Contact, external_ids.find_contact("hubspot", remote))
        return {
            d.topic: d.reason.value
            for d in consent.decisions_for_contact(contact)
            if d.channel == "email"
        }


def test_consent_in_hubspot_becomes_a_request_under_the_double_opt_in_rules(
    app, hubspot, monkeypatch
) -> None:
    remote = _consenting(hubspot, monkeypatch, app, "ja@kund.se")
    result = run(app)
    assert result.outcome == "done" and result.skipped == []
    decisions = _decisions(app, remote)
    # The newsletter always needs the person's confirmation (R8); events from
    # Sweden takes the consent as a ticked box on a form would.
    assert decisions["newsletter"] == "pending_confirmation"
    assert decisions["events"] == "consent"
    with app.app_context():
        asked = db.session.scalar(
            sa.select(sa.func.count())
            .select_from(OutboxMessage)
            .where(OutboxMessage.contact_id == external_ids.find_contact("hubspot", remote))
        )
    assert asked == 1
    # A second sync asks nothing more.
    run(app)
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(OutboxMessage)) == 1


def test_consent_in_hubspot_never_undoes_a_no_given_here(app, hubspot, monkeypatch) -> None:
    with app.app_context():
        registration = consent.register_contact(CLI_ACTOR, "nej@kund.se", {"country": "SE"})
        consent.record_objection(CLI_ACTOR, registration.contact.id)
    remote = _consenting(hubspot, monkeypatch, app, "nej@kund.se")
    run(app)
    assert set(_decisions(app, remote).values()) == {"objection"}


def test_consent_is_not_read_from_hubspot_unless_configured(app, hubspot) -> None:
    remote = hubspot.add("contacts", {"email": "tyst@kund.se", "country": "SE"})
    hubspot.set_status("tyst@kund.se", EVENTS, "SUBSCRIBED", "CONSENT_WITH_NOTICE", WORDING)
    run(app)
    assert _decisions(app, remote)["events"] == "no_basis"
    assert hubspot.calls_to("GET", "/communication-preferences/") == 0


def test_no_basis_is_not_written_as_an_opt_out(app, hubspot) -> None:
    """Only the person's own "no" becomes NOT_SUBSCRIBED (an opt-out HubSpot's
    API cannot undo); a contact without a basis is shown by the summary alone."""
    remote, _ = anna(hubspot, customer=False)
    run(app)
    assert hubspot.calls_to("POST", "/communication-preferences/v3/unsubscribe") == 0
    assert hubspot.calls_to("POST", "/communication-preferences/v3/subscribe") == 0
    properties = hubspot.objects["contacts"][remote]["properties"]
    assert properties["consent_may_market"] == "false"
    assert properties["consent_explanation"].startswith("Not allowed: no consent")


def test_a_feed_cursor_older_than_the_feed_keeps_restarts_from_the_oldest_item(
    app, hubspot
) -> None:
    from crm.models import Change

    anna(hubspot)
    run(app)
    with app.app_context():
        state = db.session.get(ConnectorState, "hubspot")
        stale = state.cursors["feed"]
        # The connector stood still while the feed aged and was pruned.
        db.session.execute(sa.update(Change).values(occurred_at=datetime(2020, 1, 1, tzinfo=UTC)))
        db.session.commit()
        registration = consent.register_contact(CLI_ACTOR, "ny@kund.se", {})
        retention.run_daily()
        state = db.session.get(ConnectorState, "hubspot")
        state.cursors = {**state.cursors, "feed": "c1.0.1"}
        db.session.commit()
        assert registration.contact.id
    assert stale
    result = run(app)
    assert result.outcome == "done"
    assert [s["object"] for s in result.skipped] == ["feed"]
    assert "CHANGE_FEED_KEEP_DAYS" in result.skipped[0]["reason"]


# Reading what changed (HubSpot's CRM search) ---------------------------------------------


def _settled(app: Any, hubspot: HubSpotStandIn, policy: RetryPolicy) -> None:
    """A first sync, then one more: the first sync's own writes (the summary
    properties) move the contacts' last-modified time, so the second reads
    them again and finds them unchanged."""
    with app.app_context():
        assert sync.sync("hubspot", policy=policy).outcome == "done"
        assert sync.sync("hubspot", policy=policy).outcome == "done"
        db.session.remove()


def _no_overlap() -> RetryPolicy:
    # The stand-in's clock is ours: no skew to allow for.
    return RetryPolicy(tries=4, backoff_s=0, read_overlap_s=0, sleep=lambda s: None)


def test_a_later_sync_reads_only_the_records_changed_in_hubspot(app, hubspot) -> None:
    made = [
        hubspot.add("contacts", {"email": f"p{i}@kund.se", "country": "SE"}) for i in range(150)
    ]
    policy = _no_overlap()
    _settled(app, hubspot, policy)
    # The first sync read every page of the list API (150 contacts: 2 pages).
    assert hubspot.calls_to("GET", "/crm/v3/objects/contacts") == 2
    hubspot.touch("contacts", made[7], {"phone": "+46 8 123 456"})
    call = hubspot.add("calls", {"hs_timestamp": CALL_AT}, {"contacts": [made[9]]})
    searches, answered = len(hubspot.searches), len(hubspot.search_results)
    with app.app_context():
        result = sync.sync("hubspot", policy=policy)
    assert result.outcome == "done" and result.items_in == 2
    # One search per object type, each answering only what changed.
    assert hubspot.calls_to("GET", "/crm/v3/objects/contacts") == 2
    assert len(hubspot.searches) - searches == 3  # contacts, calls, meetings
    assert hubspot.search_results[answered:] == [1, 1, 0]
    assert the_contact(app, made[7]).phone == "+46 8 123 456"
    with app.app_context():
        activity = db.session.scalar(sa.select(Activity))
        assert activity is not None and activity.kind == "call"
    assert call in hubspot.objects["calls"]
    # Each search filters and sorts on HubSpot's last-modified property.
    request = hubspot.searches[searches]
    assert request["filterGroups"][0]["filters"][0]["propertyName"] == "lastmodifieddate"
    assert request["filterGroups"][0]["filters"][0]["operator"] == "GTE"
    assert request["sorts"] == [{"propertyName": "lastmodifieddate", "direction": "ASCENDING"}]
    assert hubspot.searches[searches + 1]["sorts"][0]["propertyName"] == "hs_lastmodifieddate"


def test_a_record_changed_at_the_boundary_moment_is_not_lost(app, hubspot) -> None:
    remote = hubspot.add("contacts", {"email": "kant@kund.se", "country": "SE"})
    policy = _no_overlap()
    _settled(app, hubspot, policy)
    with app.app_context():
        since = db.session.get(ConnectorState, "hubspot").cursors["contacts@since"]
    # Changed in HubSpot at the very millisecond the next read starts from.
    moment = datetime.fromisoformat(since)
    at = moment.replace(microsecond=moment.microsecond // 1000 * 1000)
    hubspot.touch("contacts", remote, {"phone": "+46 8 555 000"}, at=_iso(at))
    with app.app_context():
        assert sync.sync("hubspot", policy=policy).items_in == 1
    assert the_contact(app, remote).phone == "+46 8 555 000"


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _small_search(app: Any, hubspot: HubSpotStandIn, limit: int, page: int) -> Any:
    from connectors.hubspot import HubSpot

    hubspot.search_limit = limit
    return HubSpot(
        app.config["HUBSPOT_ACCESS_TOKEN"],
        app.config["HUBSPOT_BASE_URL"],
        {"newsletter": NEWSLETTER, "events": EVENTS},
        ["calls"],
        search_limit=limit,
        page_size=page,
    )


def test_the_search_limit_moves_the_time_cursor_and_loses_no_record(app, hubspot) -> None:
    """HubSpot answers at most 10,000 results per query (here 5, two a page):
    the read moves its time cursor to the last record read and pages again;
    records sharing that moment are read twice, never lost."""
    policy = _no_overlap()
    _settled(app, hubspot, policy)
    base = datetime.now(UTC).replace(microsecond=0)
    seconds = [1, 2, 3, 4, 4, 4, 5, 6, 6, 7, 8]
    made = [
        hubspot.add(
            "contacts",
            {"email": f"s{i}@kund.se", "country": "SE"},
            modified=_iso(base.replace(second=0) + timedelta(minutes=2, seconds=s)),
        )
        for i, s in enumerate(seconds)
    ]
    connector = _small_search(app, hubspot, limit=5, page=2)
    searches = len(hubspot.searches)
    with app.app_context():
        result = sync.sync("hubspot", connector=connector, policy=policy)
    assert result.outcome == "done" and result.items_in == len(made)
    assert all(the_contact(app, r) is not None for r in made)
    contact_searches = [
        s
        for s in hubspot.searches[searches:]
        if s["sorts"][0]["propertyName"] == "lastmodifieddate"
    ]
    # Never past the limit, and the time cursor moved (a later GTE value).
    assert all(int(s.get("after") or 0) + 2 <= 5 for s in contact_searches)
    values = [int(s["filterGroups"][0]["filters"][0]["value"]) for s in contact_searches]
    assert len(set(values)) >= 3 and values == sorted(values)


def test_more_records_at_one_moment_than_the_limit_stop_the_turn_and_a_full_resync_reads_them(
    app, hubspot
) -> None:

    policy = _no_overlap()
    _settled(app, hubspot, policy)
    moment = _iso(datetime.now(UTC) + timedelta(minutes=2))
    made = [
        hubspot.add("contacts", {"email": f"m{i}@kund.se", "country": "SE"}, modified=moment)
        for i in range(6)
    ]
    with app.app_context():
        result = sync.sync("hubspot", connector=_small_search(app, hubspot, 5, 2), policy=policy)
        assert result.outcome == "unavailable"
        assert "full resync" in db.session.get(ConnectorState, "hubspot").last_error
    # The pages before the limit were written; the rest cannot be reached by the search.
    assert any(the_contact(app, r) is None for r in made)
    page = client_as(app, "admin").post("/staff/connectors/hubspot/full-resync")
    assert page.status_code == 303
    with app.app_context():
        assert db.session.get(ConnectorState, "hubspot").cursors == {}, page.headers
    with app.app_context():
        result = sync.sync("hubspot", connector=_small_search(app, hubspot, 5, 2), policy=policy)
    assert result.outcome == "done", result
    assert all(the_contact(app, r) is not None for r in made)


def test_a_consent_given_in_hubspot_later_is_read(app, hubspot, monkeypatch) -> None:
    """A subscription status changed in HubSpot reaches us although none of
    the contact's own fields changed (HubSpot moves the contact's
    last-modified time; the consents seen are part of the fingerprint)."""
    monkeypatch.setitem(app.config, "HUBSPOT_CONSENT_POLICY_VERSION", "2026-01")
    remote = hubspot.add("contacts", {"email": "sen@kund.se", "country": "SE"})
    _settled(app, hubspot, _no_overlap())
    assert _decisions(app, remote)["events"] == "no_basis"
    hubspot.set_status("sen@kund.se", EVENTS, "SUBSCRIBED", "CONSENT_WITH_NOTICE", WORDING)
    with app.app_context():
        assert sync.sync("hubspot", policy=_no_overlap()).outcome == "done"
    assert _decisions(app, remote)["events"] == "consent"


def test_a_search_answered_429_waits_and_loses_nothing(app, hubspot) -> None:
    policy = _no_overlap()
    _settled(app, hubspot, policy)
    remote = hubspot.add("contacts", {"email": "vanta@kund.se", "country": "SE"})
    hubspot.fail(429, times=2, prefix="/crm/v3/objects/contacts/search")
    waits: list[float] = []
    with app.app_context():
        result = sync.sync(
            "hubspot",
            policy=RetryPolicy(tries=4, backoff_s=0, read_overlap_s=0, sleep=waits.append),
        )
    assert result.outcome == "done" and waits == [1.0, 1.0]
    assert the_contact(app, remote) is not None
