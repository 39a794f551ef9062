"""The Salesforce connector end to end against the stand-in: the real client
library (simple-salesforce over HTTPS), the real services, the real change
feed, through the scheduler's sync job (issue 24's "done when")."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime
from typing import Any

import pytest
import sqlalchemy as sa

from connectors import sync
from connectors.base import GONE, REFUSED, RETRY, REVOKED
from connectors.models import ConnectorDeletion, ConnectorRecord, ConnectorState
from connectors.salesforce import Salesforce
from consent import services as consent
from consent.rights import erase_contact
from crm import external_ids, retention
from crm.models import Activity, Company, Contact
from extensions import db
from kernel.access import CLI_ACTOR
from tests.conftest import count_rows
from tests.connectors.conftest import contact_of, run_sync
from tests.connectors.salesforce_standin import SalesforceStandIn
from tests.crm.retention_helpers import day
from tests.staff.helpers import client_as
from tests.test_observability import scrape, value

CALL_AT = "2026-03-04T10:15:00.000+0000"


def run(app: Any, waits: list[float] | None = None) -> sync.Run:
    return run_sync(app, "salesforce", waits)  # type: ignore[no-any-return]


def the_contact(app: Any, remote_id: str) -> Contact | None:
    return contact_of(app, "salesforce", remote_id)  # type: ignore[no-any-return]


def anna(sf: SalesforceStandIn, *, customer: bool = True) -> tuple[str, str]:
    """A contact of a customer account in Salesforce, with a call logged."""
    account = sf.add(
        "Account",
        {
            "Name": "Kund AB",
            "BillingCountry": "Sweden",
            "Type": "Customer - Direct" if customer else "Prospect",
            "CreatedDate": "2024-05-01T08:00:00.000+0000",
        },
    )
    contact = sf.add(
        "Contact",
        {
            "Email": "Anna.Berg@Kund.se",
            "FirstName": "Anna",
            "LastName": "Berg",
            "MailingCountry": "SE",
            "AccountId": account,
        },
    )
    call = sf.add(
        "Task",
        {
            "WhoId": contact,
            "Subject": "Call",
            "TaskSubtype": "Call",
            "Status": "Completed",
            "IsClosed": True,
            "ActivityDate": "2026-03-04",
            "CompletedDateTime": CALL_AT,
        },
    )
    return contact, call


def consents_of(sf: SalesforceStandIn, contact_id: str) -> dict[str, dict[str, Any]]:
    """The contact's email consent records in Salesforce, by our topic."""
    individual = sf.objects["Contact"][contact_id]["IndividualId"]
    topics = {v: k for k, v in sf.purposes.items()}
    return {
        topics[r["DataUsePurposeId"]]: r
        for r in sf.live("ContactPointTypeConsent")
        if r["PartyId"] == individual and r["ContactPointType"] == "Email"
    }


def test_a_contact_with_a_call_arrives_with_its_external_id_and_last_interaction(
    app, salesforce
) -> None:
    remote, _ = anna(salesforce)
    assert run(app).outcome == "done"
    contact = the_contact(app, remote)
    assert contact is not None
    assert contact.email == "anna.berg@kund.se" and contact.name == "Anna Berg"
    # A call logged in Salesforce since: the next sync moves the last interaction.
    time.sleep(0.002)
    now = datetime.now(UTC)
    called_at = now.replace(microsecond=now.microsecond // 1000 * 1000)
    salesforce.add(
        "Task",
        {
            "WhoId": remote,
            "TaskSubtype": "Call",
            "IsClosed": True,
            "CompletedDateTime": called_at.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000",
        },
    )
    # An open task (a call still to make) and another subtype are no interactions.
    salesforce.add("Task", {"WhoId": remote, "TaskSubtype": "Call", "IsClosed": False})
    salesforce.add("Task", {"WhoId": remote, "TaskSubtype": "Task", "IsClosed": True})
    assert run(app).outcome == "done"
    contact = the_contact(app, remote)
    assert contact.last_interaction_at == called_at
    with app.app_context():
        company = db.session.get(Company, contact.company_id)
        assert company is not None and company.country == "SE"
        assert company.customer_since == date(2024, 5, 1)
        account = next(iter(salesforce.objects["Account"]))
        assert external_ids.for_companies([company.id])[company.id] == {"salesforce": account}
        kinds = db.session.scalars(
            sa.select(Activity.kind).where(Activity.contact_id == contact.id)
        ).all()
        assert kinds == ["call", "call"]
        state = db.session.get(ConnectorState, "salesforce")
        assert state.items_in == 3 and state.last_success_at is not None and state.errors == 0


def test_the_sync_job_from_the_scheduler_runs_the_salesforce_connector(
    app, salesforce, stub_worker
) -> None:
    from kernel.jobs import send_job

    remote, _ = anna(salesforce)
    with app.app_context():
        send_job("sync_connectors")
    stub_worker.join("connectors")
    assert the_contact(app, remote) is not None


def test_meetings_are_read_in_pages_with_query_more(app, salesforce) -> None:
    remote, _ = anna(salesforce)
    salesforce.page_size_cap = 1
    for hour in (9, 10, 11):
        salesforce.add(
            "Event",
            {"WhoId": remote, "StartDateTime": f"2026-02-0{hour - 8}T{hour}:00:00.000+0000"},
        )
    # A meeting still to come is not an interaction yet.
    salesforce.add("Event", {"WhoId": remote, "StartDateTime": "2099-01-01T10:00:00.000+0000"})
    assert run(app).outcome == "done"
    assert salesforce.calls_to("GET", "query/01g") >= 3  # nextRecordsUrl batches
    contact = the_contact(app, remote)
    with app.app_context():
        kinds = sorted(
            db.session.scalars(sa.select(Activity.kind).where(Activity.contact_id == contact.id))
        )
    assert kinds == ["call", "meeting", "meeting", "meeting"]


def test_an_expired_query_locator_starts_the_read_over_and_loses_nothing(app, salesforce) -> None:
    salesforce.page_size_cap = 1
    ids = [
        salesforce.add("Contact", {"Email": f"p{i}@kund.se", "LastName": f"P{i}"}) for i in range(3)
    ]
    original = salesforce._more

    def expiring(token, batch):  # type: ignore[no-untyped-def]
        if salesforce.calls_to("GET", "query/01g") == 1:
            salesforce.expire_locators()
        return original(token, batch)

    salesforce._more = expiring  # type: ignore[method-assign]
    assert run(app).outcome == "done"
    assert all(the_contact(app, i) is not None for i in ids)


def test_the_customer_basis_is_written_as_an_opt_in_consent_record_with_its_legal_basis(
    app, salesforce
) -> None:
    remote, _ = anna(salesforce)
    run(app)
    records = consents_of(salesforce, remote)
    assert records["events"]["PrivacyConsentStatus"] == "OptIn"
    assert records["events"]["Legal_Basis__c"] == "Legitimate interest (customer)"
    # The newsletter needs consent, which nobody gave: not seen, and no basis.
    assert records["newsletter"]["PrivacyConsentStatus"] == "NotSeen"
    assert records["newsletter"]["Legal_Basis__c"] is None
    contact = salesforce.objects["Contact"][remote]
    assert contact["Consent_May_Market__c"] is True
    assert "customer" in contact["Consent_Explanation__c"].lower()
    assert contact["HasOptedOutOfEmail"] is None


def test_an_objection_here_appears_as_opt_out_records_with_the_legal_basis_and_flags(
    app, salesforce
) -> None:
    remote, _ = anna(salesforce)
    run(app)
    contact = the_contact(app, remote)
    with app.app_context():
        consent.record_objection(CLI_ACTOR, contact.id)
    run(app)
    records = consents_of(salesforce, remote)
    assert records["events"]["PrivacyConsentStatus"] == "OptOut"
    # The "no" names the basis it ends.
    assert records["events"]["Legal_Basis__c"] == "Legitimate interest (customer)"
    assert records["newsletter"]["PrivacyConsentStatus"] == "OptOut"
    sf_contact = salesforce.objects["Contact"][remote]
    assert sf_contact["HasOptedOutOfEmail"] is True
    assert sf_contact["Consent_May_Market__c"] is False
    assert "objected" in sf_contact["Consent_Explanation__c"]
    individual = salesforce.objects["Individual"][sf_contact["IndividualId"]]
    assert individual["HasOptedOutSolicit"] is True
    assert individual["LastName"] == "Berg"


def test_an_opt_out_a_salesperson_set_is_never_undone(app, salesforce) -> None:
    """As a HubSpot opt-out cannot be undone through its API: an OptOut (and
    the email opt-out flag) entered in Salesforce stays, whatever the basis here."""
    remote, _ = anna(salesforce)
    individual = salesforce.add("Individual", {"LastName": "Berg"})
    contact = salesforce.objects["Contact"][remote]
    contact.update(IndividualId=individual, HasOptedOutOfEmail=True)
    salesforce.add(
        "ContactPointTypeConsent",
        {
            "Name": "Events",
            "PartyId": individual,
            "ContactPointType": "Email",
            "DataUsePurposeId": salesforce.purposes["events"],
            "PrivacyConsentStatus": "OptOut",
            "CaptureContactPointType": "Phone",
            "CaptureDate": "2026-01-01T00:00:00.000+0000",
            "CaptureSource": "Sales call",
        },
    )
    assert run(app).outcome == "done"
    records = consents_of(salesforce, remote)
    assert records["events"]["PrivacyConsentStatus"] == "OptOut"
    assert records["events"]["CaptureSource"] == "Sales call"
    assert records["newsletter"]["PrivacyConsentStatus"] == "NotSeen"
    assert contact["HasOptedOutOfEmail"] is True


def test_an_opt_out_we_wrote_becomes_opt_in_after_the_persons_own_yes(app, salesforce) -> None:
    remote, _ = anna(salesforce)
    run(app)
    contact = the_contact(app, remote)
    with app.app_context():
        consent.record_objection(CLI_ACTOR, contact.id)
    run(app)
    assert consents_of(salesforce, remote)["events"]["PrivacyConsentStatus"] == "OptOut"
    assert salesforce.objects["Contact"][remote]["HasOptedOutOfEmail"] is True
    with app.app_context():
        from consent import subscriptions
        from consent.evidence import Evidence
        from crm.services import get_contact

        now = datetime.now(UTC)
        request = subscriptions.request_topics(
            get_contact(contact.id), ["events"], "form", Evidence(), now
        )
        assert request is not None
        subscriptions.confirm_subscription(request.id, Evidence(ip_address="192.0.2.9"), now)
        db.session.commit()
        db.session.remove()
    run(app)
    assert consents_of(salesforce, remote)["events"]["PrivacyConsentStatus"] == "OptIn"
    assert salesforce.objects["Contact"][remote]["HasOptedOutOfEmail"] is False
    individual = salesforce.objects["Contact"][remote]["IndividualId"]
    assert salesforce.objects["Individual"][individual]["HasOptedOutSolicit"] is False


def test_a_second_sync_changes_nothing(app, salesforce) -> None:
    anna(salesforce)
    run(app)
    before = count_rows(app)
    writes = salesforce.writes()
    assert writes > 0
    result = run(app)
    assert result.outcome == "done" and result.items_in == 0 and result.items_out == 0
    assert count_rows(app) == before
    assert salesforce.writes() == writes


def test_a_retention_purge_here_deletes_the_tasks_and_events_in_salesforce(app, salesforce) -> None:
    remote, call = anna(salesforce)
    old_call = salesforce.add(
        "Task",
        {
            "WhoId": remote,
            "TaskSubtype": "Call",
            "IsClosed": True,
            "CompletedDateTime": "2020-01-01T09:00:00.000+0000",
        },
    )
    old_meeting = salesforce.add(
        "Event", {"WhoId": remote, "StartDateTime": "2020-02-01T09:00:00.000+0000"}
    )
    run(app)
    # A salesperson deleted the meeting meanwhile: Salesforce answers 404, which is done too.
    salesforce.objects["Event"][old_meeting]["IsDeleted"] = True
    policy = retention.RetentionPolicy.from_mapping(
        {
            "retention": {
                "rules": [
                    {
                        "name": "old-activities",
                        "category": "activity",
                        "kinds": ["call", "meeting"],
                        "years": 2,
                        "counts_from": "record_date",
                    }
                ]
            }
        }
    )
    with app.app_context():
        retention.run(day("2026-06-01"), started_by="test", policy=policy)
    assert run(app).outcome == "done"
    assert salesforce.objects["Task"][old_call]["IsDeleted"] is True
    assert salesforce.objects["Event"][old_meeting]["IsDeleted"] is True
    assert salesforce.objects["Task"][call]["IsDeleted"] is False
    with app.app_context():
        done = db.session.scalars(
            sa.select(ConnectorDeletion).order_by(ConnectorDeletion.remote_id)
        ).all()
        assert sorted((d.object_type, d.remote_id, d.done_at is not None) for d in done) == sorted(
            [("calls", old_call, True), ("meetings", old_meeting, True)]
        )


def test_an_erasure_deletes_the_contact_its_individual_consents_and_activities(
    app, salesforce
) -> None:
    remote, call = anna(salesforce)
    run(app)
    individual = salesforce.objects["Contact"][remote]["IndividualId"]
    assert individual
    contact = the_contact(app, remote)
    with app.app_context():
        erase_contact(CLI_ACTOR, contact.id)
    assert run(app).outcome == "done"
    assert salesforce.objects["Contact"][remote]["IsDeleted"] is True
    assert salesforce.objects["Task"][call]["IsDeleted"] is True
    assert salesforce.objects["Individual"][individual]["IsDeleted"] is True
    assert salesforce.live("ContactPointTypeConsent") == []
    run(app)
    assert the_contact(app, remote) is None


def test_an_erasure_deletes_every_duplicate_contact_in_salesforce(app, salesforce) -> None:
    """Two Salesforce contacts with the same email are one contact here (the
    external id names only the last read): an erasure deletes both, and a
    full read later brings nobody back."""
    first, _ = anna(salesforce)
    second = salesforce.add(
        "Contact", {"Email": "anna.berg@kund.se", "FirstName": "Anna", "LastName": "Berg"}
    )
    run(app)
    contact = the_contact(app, second)  # the id of the last read
    assert contact is not None
    with app.app_context():
        linked = db.session.scalars(
            sa.select(ConnectorRecord.remote_id).where(
                ConnectorRecord.object_type == "contacts",
                ConnectorRecord.contact_id == contact.id,
            )
        ).all()
        assert sorted(linked) == sorted([first, second])
        # The retention preview counts both (as the deletion path owes them).
        from connectors import services

        [preview] = services.copy_deletions(app, contacts={contact.id}, activities={})
        assert preview.due["contacts"] == 2
        erase_contact(CLI_ACTOR, contact.id)
    assert run(app).outcome == "done"
    assert salesforce.objects["Contact"][first]["IsDeleted"] is True
    assert salesforce.objects["Contact"][second]["IsDeleted"] is True
    with app.app_context():
        db.session.execute(sa.delete(ConnectorState))  # a full read from the start
        db.session.commit()
    assert run(app).outcome == "done"
    assert the_contact(app, first) is None and the_contact(app, second) is None
    with app.app_context():
        assert (
            db.session.scalar(
                sa.select(sa.func.count())
                .select_from(Contact)
                .where(Contact.email == "anna.berg@kund.se")
            )
            == 0
        )


def test_an_objection_reaches_every_duplicate_contact_in_salesforce(app, salesforce) -> None:
    first, _ = anna(salesforce)
    second = salesforce.add(
        "Contact", {"Email": "anna.berg@kund.se", "FirstName": "Anna", "LastName": "Berg"}
    )
    run(app)
    with app.app_context():
        consent.record_objection(CLI_ACTOR, the_contact(app, second).id)
    run(app)
    for remote in (first, second):
        assert salesforce.objects["Contact"][remote]["HasOptedOutOfEmail"] is True
        assert consents_of(salesforce, remote)["events"]["PrivacyConsentStatus"] == "OptOut"


@pytest.mark.parametrize("erasure", ["delete", "anonymise"])
def test_an_individual_another_contact_shares_keeps_its_consents(
    app, salesforce, monkeypatch, erasure
) -> None:
    """Erasing one contact never removes the consent records (a "no" among
    them) of another Salesforce contact sharing its Individual: this contact
    is only unlinked."""
    monkeypatch.setitem(app.config, "SALESFORCE_ERASURE", erasure)
    remote, _ = anna(salesforce)
    individual = salesforce.add("Individual", {"LastName": "Berg", "HasOptedOutSolicit": True})
    salesforce.objects["Contact"][remote]["IndividualId"] = individual
    other = salesforce.add(
        "Contact", {"Email": "a.berg@privat.se", "LastName": "Berg", "IndividualId": individual}
    )
    salesforce.add(
        "ContactPointTypeConsent",
        {
            "Name": "Events",
            "PartyId": individual,
            "ContactPointType": "Email",
            "PrivacyConsentStatus": "OptOut",
            "CaptureContactPointType": "Web",
            "CaptureDate": CALL_AT,
        },
    )
    run(app)
    with app.app_context():
        erase_contact(CLI_ACTOR, the_contact(app, remote).id)
    assert run(app).outcome == "done"
    assert salesforce.objects["Individual"][individual]["IsDeleted"] is False
    assert salesforce.objects["Individual"][individual]["LastName"] == "Berg"
    assert salesforce.objects["Individual"][individual]["ShouldForget"] is None
    assert any(
        r["PartyId"] == individual and r["PrivacyConsentStatus"] == "OptOut"
        for r in salesforce.live("ContactPointTypeConsent")
    )
    assert salesforce.objects["Contact"][remote]["IndividualId"] is None
    assert salesforce.objects["Contact"][other]["IndividualId"] == individual


def test_an_individual_made_for_a_contact_without_a_name_is_not_named_by_its_email(
    app, salesforce
) -> None:
    remote = salesforce.add("Contact", {"Email": "x@kund.se", "LastName": "X"})
    salesforce.objects["Contact"][remote]["LastName"] = None
    run(app)
    individual = salesforce.objects["Contact"][remote]["IndividualId"]
    assert individual
    assert salesforce.objects["Individual"][individual]["LastName"] == "(no name)"
    assert "x@kund.se" not in str(salesforce.objects["Individual"][individual])


def test_an_erasure_anonymises_instead_of_deleting_when_configured(
    app, salesforce, monkeypatch
) -> None:
    monkeypatch.setitem(app.config, "SALESFORCE_ERASURE", "anonymise")
    remote, call = anna(salesforce)
    personal = {
        "Phone": "+46 8 123",
        "MobilePhone": "+46 70 1",
        "HomePhone": "+46 8 2",
        "OtherPhone": "+46 8 3",
        "AssistantName": "Bo",
        "AssistantPhone": "+46 8 4",
        "Title": "CFO",
        "Department": "Finance",
        "Birthdate": "1980-01-02",
        "MailingStreet": "Storgatan 1",
        "MailingCity": "Lund",
        "MailingPostalCode": "222 22",
        "MailingState": "Skåne",
        "OtherStreet": "Lillgatan 2",
        "OtherCity": "Malmö",
        "OtherPostalCode": "211 11",
        "OtherState": "Skåne",
        "OtherCountry": "Sweden",
        "Description": "Met at the fair",
    }
    salesforce.objects["Contact"][remote].update(personal)
    run(app)
    with app.app_context():
        erase_contact(CLI_ACTOR, the_contact(app, remote).id)
    assert run(app).outcome == "done"
    with app.app_context():
        done = db.session.scalars(sa.select(ConnectorDeletion)).all()
        assert {(d.object_type, d.erasure, d.done_at is not None) for d in done} == {
            ("calls", "anonymise", True),
            ("contacts", "anonymise", True),
        }
    sf_contact = salesforce.objects["Contact"][remote]
    assert sf_contact["IsDeleted"] is False
    assert (sf_contact["FirstName"], sf_contact["LastName"], sf_contact["Email"]) == (
        None,
        "Anonymised",
        None,
    )
    assert {name: sf_contact[name] for name in personal} == dict.fromkeys(personal)
    individual = salesforce.objects["Individual"][sf_contact["IndividualId"]]
    assert individual["ShouldForget"] is True and individual["LastName"] == "Anonymised"
    task = salesforce.objects["Task"][call]
    assert task["IsDeleted"] is False and task["WhoId"] is None
    assert task["Subject"] == "Anonymised"


def _connector(app: Any) -> Salesforce:
    from connectors import config

    built = config.build("salesforce")
    assert isinstance(built, Salesforce)
    return built


@pytest.mark.parametrize(
    ("status", "code", "prefix"),
    [
        (503, None, "query"),
        (500, None, "sobjects/Contact"),
        (429, None, "query"),
        (403, "CONCURRENT_LIMIT", "query"),
    ],
)
def test_limits_and_5xx_for_a_while_lose_nothing(app, salesforce, status, code, prefix) -> None:
    remote, _ = anna(salesforce)
    salesforce.fail(status, times=2, prefix=prefix, code=code)
    waits: list[float] = []
    result = run(app, waits)
    assert result.outcome == "done"
    assert waits == [0.5, 1.0]  # the doubling backoff
    assert the_contact(app, remote) is not None
    assert consents_of(salesforce, remote)["events"]["PrivacyConsentStatus"] == "OptIn"
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Activity)) == 1


def test_the_daily_request_limit_ends_the_turn_and_the_next_resumes(app, salesforce) -> None:
    remote, _ = anna(salesforce)
    salesforce.fail(403, times=1, prefix="query", code="REQUEST_LIMIT_EXCEEDED")
    waits: list[float] = []
    result = run(app, waits)
    # A rolling 24-hour limit: no retry waits that long, the turn ends.
    assert result.outcome == "unavailable" and waits == []
    with app.app_context():
        state = db.session.get(ConnectorState, "salesforce")
        assert "REQUEST_LIMIT_EXCEEDED" in state.last_error and state.stopped_because is None
    assert run(app).outcome == "done"
    assert the_contact(app, remote) is not None


def test_a_revoked_session_stops_the_connector_shows_why_and_writes_nothing(
    app, salesforce
) -> None:
    anna(salesforce)
    salesforce.token = None  # the connected app's access revoked in Salesforce
    before = count_rows(app)
    result = run(app)
    assert result.outcome == "revoked"
    after = count_rows(app)
    assert {k: v for k, v in after.items() if k != "connector_state" and v != before.get(k)} == {}
    assert salesforce.writes() == 0
    with app.app_context():
        state = db.session.get(ConnectorState, "salesforce")
        assert "INVALID_SESSION_ID" in state.stopped_because
    calls = len(salesforce.requests)
    assert run(app).outcome == "stopped"
    assert len(salesforce.requests) == calls
    page = client_as(app, "admin").get("/staff/connectors").get_data(as_text=True)
    assert "salesforce" in page and "INVALID_SESSION_ID" in page
    assert value(scrape(app.test_client()), "consent_connector_stopped") == 1.0


def test_a_session_revoked_mid_sync_leaves_no_partial_decision_write(app, salesforce) -> None:
    """Revoked between the reads and the writes: the contact is here (it was
    written whole), the feed's cursor did not move, and the next run after
    *Resume* writes the decisions in full."""
    remote, _ = anna(salesforce)
    salesforce.fail(401, times=1, prefix="sobjects/Contact/")
    assert run(app).outcome == "revoked"
    assert the_contact(app, remote) is not None
    assert salesforce.writes() == 0
    with app.app_context():
        assert "feed" not in (db.session.get(ConnectorState, "salesforce").cursors or {})
    client_as(app, "admin")
    with app.app_context():
        from connectors import services

        services.resume(CLI_ACTOR, "salesforce")
    assert run(app).outcome == "done"
    assert consents_of(salesforce, remote)["events"]["PrivacyConsentStatus"] == "OptIn"


def test_an_invalid_record_is_skipped_with_its_reason(app, salesforce) -> None:
    bad_mail = salesforce.add("Contact", {"Email": "not-an-address", "LastName": "X"})
    bad_country = salesforce.add(
        "Contact", {"Email": "eva@kund.se", "LastName": "Eva", "MailingCountry": "Atlantis"}
    )
    good = salesforce.add("Contact", {"Email": "ok@kund.se", "LastName": "Ok"})
    result = run(app)
    assert result.outcome == "done"
    assert the_contact(app, good) is not None
    assert the_contact(app, bad_mail) is None and the_contact(app, bad_country) is None
    with app.app_context():
        report = db.session.get(ConnectorState, "salesforce").report
    reasons = {r["id"]: r["reason"] for r in report}
    assert set(reasons) == {bad_mail, bad_country}
    assert "Unknown country" in reasons[bad_country]
    assert "email" in reasons[bad_mail].lower()
    run(app)
    with app.app_context():
        assert len(db.session.get(ConnectorState, "salesforce").report) == 2


def test_text_no_column_can_hold_skips_the_record_and_not_the_page(app, salesforce) -> None:
    nul = salesforce.add("Contact", {"Email": "nul@kund.se", "FirstName": "A\x00", "LastName": "B"})
    long = salesforce.add("Contact", {"Email": "lang@kund.se", "LastName": "x" * 5000})
    account = salesforce.add("Account", {"Name": "K" * 201, "Type": "Customer"})
    in_firm = salesforce.add(
        "Contact", {"Email": "firma@kund.se", "LastName": "C", "AccountId": account}
    )
    good = salesforce.add("Contact", {"Email": "ok@kund.se", "LastName": "<i>Ok</i>"})
    assert run(app).outcome == "done"
    good_contact = the_contact(app, good)
    assert good_contact is not None and good_contact.name == "<i>Ok</i>"
    assert [the_contact(app, r) for r in (nul, long, in_firm)] == [None, None, None]
    with app.app_context():
        report = db.session.get(ConnectorState, "salesforce").report
    reasons = {r["id"]: r["reason"] for r in report}
    assert reasons == {
        nul: "The name contains a NUL byte; it cannot be stored.",
        long: "The name is longer than 200 characters; it cannot be stored.",
        in_firm: "The company name is longer than 200 characters; it cannot be stored.",
    }


def test_a_record_whose_id_holds_a_nul_is_skipped_and_not_the_page(app, salesforce) -> None:
    nul = salesforce.add("Contact", {"Email": "nul-id@kund.se", "LastName": "N"})
    salesforce.objects["Contact"][nul]["Id"] = "003\x00NUL"
    good = salesforce.add("Contact", {"Email": "ok@kund.se", "LastName": "Ok"})
    # A call whose contact id holds a NUL names no contact of ours: not logged,
    # and the page's other call is.
    call = {"Subject": "Call", "TaskSubtype": "Call", "Status": "Completed", "IsClosed": True}
    salesforce.add("Task", {**call, "WhoId": "003\x00NUL", "CompletedDateTime": CALL_AT})
    salesforce.add("Task", {**call, "WhoId": good, "CompletedDateTime": CALL_AT})
    assert run(app).outcome == "done"
    assert the_contact(app, good) is not None
    with app.app_context():
        report = db.session.get(ConnectorState, "salesforce").report
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Contact)) == 1
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Activity)) == 1
    assert [(r["id"], r["reason"][:31]) for r in report] == [
        ("003\\x00NUL", "The record's id cannot be held:")
    ]


def test_decisions_salesforce_refuses_are_skipped_with_the_reason(
    app, salesforce, monkeypatch
) -> None:
    """A 4xx other than 401/403/404 refuses that one record: reported, the
    rest goes on (here the consent records' legal basis field was never created)."""
    monkeypatch.setitem(app.config, "SALESFORCE_LEGAL_BASIS_FIELD", "Missing_Basis__c")
    remote, _ = anna(salesforce)
    result = run(app)
    assert result.outcome == "done"
    assert the_contact(app, remote) is not None
    [skip] = result.skipped
    assert skip["id"] == remote and "INVALID_FIELD" in skip["reason"]
    assert "refused the decisions" in skip["reason"]


def test_the_staff_page_and_metrics_show_the_salesforce_connector(app, client, salesforce) -> None:
    anna(salesforce)
    before = scrape(client)
    run(app)
    page = client_as(app, "admin").get("/staff/connectors")
    assert page.status_code == 200
    assert 'id="connector-salesforce"' in page.get_data(as_text=True)
    after = scrape(client)
    name = "consent_connector_items_total"
    for direction, count in (("in", 2), ("out", 1)):
        assert (
            value(after, name, connector="salesforce", direction=direction)
            - value(before, name, connector="salesforce", direction=direction)
            == count
        )
    assert 0 <= value(after, "consent_connector_last_success_age_seconds") < 60
    assert value(after, "consent_connector_stopped") == 0


def test_classify_maps_simple_salesforces_exceptions(app, salesforce) -> None:
    from simple_salesforce import exceptions as sf

    with app.app_context():
        connector = _connector(app)

    def fault(cls: type, status: int, code: str, message: str = "m") -> str:
        exc = cls("url", status, "r", [{"errorCode": code, "message": message}])
        found = connector.classify(exc)
        assert found is not None
        return found.kind

    assert fault(sf.SalesforceExpiredSession, 401, "INVALID_SESSION_ID") == REVOKED
    assert fault(sf.SalesforceRefusedRequest, 403, "INSUFFICIENT_ACCESS") == REVOKED
    assert (
        fault(sf.SalesforceRefusedRequest, 403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit")
        == RETRY
    )
    assert fault(sf.SalesforceResourceNotFound, 404, "ENTITY_IS_DELETED") == GONE
    assert fault(sf.SalesforceMalformedRequest, 400, "INVALID_FIELD") == REFUSED
    assert fault(sf.SalesforceGeneralError, 503, "SERVER_UNAVAILABLE") == RETRY
    assert connector.classify(ValueError("x")) is None


def test_the_standins_answers_are_read_by_simple_salesforce_itself(salesforce, app) -> None:
    """The contract: the library's own paging (``query_all`` follows
    ``nextRecordsUrl``), its create/update/delete answers, its usage parsing
    of ``Sforce-Limit-Info``, and its exceptions raised from the stand-in's
    error bodies and statuses."""
    from simple_salesforce import Salesforce as Client
    from simple_salesforce import exceptions as sf

    client = Client(
        instance_url=app.config["SALESFORCE_INSTANCE_URL"],
        session_id=salesforce.token,
        version="59.0",
    )
    salesforce.page_size_cap = 2
    for i in range(5):
        salesforce.add("Contact", {"LastName": f"L{i}", "Email": f"l{i}@kund.se"})
    everything = client.query_all("SELECT Id, LastName FROM Contact ORDER BY SystemModstamp, Id")
    assert everything["totalSize"] == 5 and len(everything["records"]) == 5
    assert everything["records"][0]["attributes"]["type"] == "Contact"
    created = client.Individual.create({"LastName": "Berg"})
    assert created["success"] is True and created["id"].startswith("0PK")
    assert client.Individual.update(created["id"], {"ShouldForget": True}) == 204
    individuals = client.Individual
    assert individuals.get(created["id"])["ShouldForget"] is True
    assert individuals.api_usage["api-usage"].total == 15000
    assert client.Individual.delete(created["id"]) == 204

    def raised(fn: Any) -> sf.SalesforceError:
        with pytest.raises(sf.SalesforceError) as caught:
            fn()
        return caught.value

    gone = raised(lambda: client.Individual.delete(created["id"]))
    assert isinstance(gone, sf.SalesforceResourceNotFound)
    assert gone.content[0]["errorCode"] == "ENTITY_IS_DELETED"
    bad = raised(lambda: client.Contact.create({"LastName": "X", "Nope__c": 1}))
    assert isinstance(bad, sf.SalesforceMalformedRequest)
    assert bad.content == [
        {
            "message": "No such column 'Nope__c' on sobject of type Contact",
            "errorCode": "INVALID_FIELD",
        }
    ]
    missing = raised(lambda: client.ContactPointTypeConsent.create({"Name": "x"}))
    assert missing.content[0]["errorCode"] == "REQUIRED_FIELD_MISSING"
    salesforce.fail(403, prefix="query", code="REQUEST_LIMIT_EXCEEDED")
    limited = raised(lambda: client.query("SELECT Id FROM Contact"))
    assert isinstance(limited, sf.SalesforceRefusedRequest)
    assert limited.content[0]["errorCode"] == "REQUEST_LIMIT_EXCEEDED"
    salesforce.fail(503, prefix="query")
    assert isinstance(
        raised(lambda: client.query("SELECT Id FROM Contact")), sf.SalesforceGeneralError
    )
    salesforce.token = None
    expired = raised(lambda: client.query("SELECT Id FROM Contact"))
    assert isinstance(expired, sf.SalesforceExpiredSession)
    assert expired.content[0]["errorCode"] == "INVALID_SESSION_ID"


def test_a_changed_since_read_asks_for_records_modified_since_and_meetings_begun_since(
    app, salesforce
) -> None:
    """The shape a framework reading "changed since" calls
    (``reads_changes``): ``WHERE SystemModstamp >= since``; meetings also when
    they began since (a meeting to come is left for later and never modified)."""
    old = salesforce.add("Contact", {"Email": "gammal@kund.se", "LastName": "G"})
    salesforce.objects["Contact"][old]["SystemModstamp"] = "2026-01-01T00:00:00.000+0000"
    new = salesforce.add("Contact", {"Email": "ny@kund.se", "LastName": "N"})
    meeting = salesforce.add(
        "Event", {"WhoId": old, "StartDateTime": "2026-02-01T10:00:00.000+0000"}
    )
    salesforce.objects["Event"][meeting]["SystemModstamp"] = "2026-01-01T00:00:00.000+0000"
    with app.app_context():
        connector = _connector(app)
    assert connector.reads_changes is True
    since = datetime(2026, 1, 15, tzinfo=UTC)
    assert [c.remote_id for c in connector.contacts(None).records] == [old, new]
    assert [c.remote_id for c in connector.contacts(None, since).records] == [new]
    assert [a.remote_id for a in connector.activities("meetings", None, since).records] == [meeting]
    later = datetime(2026, 3, 1, tzinfo=UTC)
    assert connector.activities("meetings", None, later).records == []
    assert connector.activities("calls", None, later).records == []
