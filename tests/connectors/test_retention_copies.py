"""What retention and erasure do to a CRM's copies (issue 24, item 4): the
retention preview counts, per connector and CRM object, what the CRM will
delete or anonymise; ``HUBSPOT_ERASURE = anonymise`` keeps the records with
nothing personal in them; and the CRM's history dates the retention clock of
the contacts the connector brought here. Against the HubSpot stand-in."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from connectors.models import ConnectorDeletion
from consent import services as consent
from consent.rights import erase_contact
from crm import external_ids, retention
from crm import services as crm
from crm.models import Contact
from extensions import db
from kernel.access import CLI_ACTOR
from tests.connectors.hubspot_standin import HubSpotStandIn
from tests.connectors.test_hubspot import CALL_AT, anna, run, the_contact
from tests.crm.retention_helpers import at, day
from tests.staff.helpers import client_as

AS_OF = "2026-06-01"
POLICY = retention.RetentionPolicy.from_mapping(
    {
        "retention": {
            "rules": [
                {
                    "name": "old-activities",
                    "category": "activity",
                    "kinds": ["call", "meeting"],
                    "years": 2,
                    "counts_from": "record_date",
                },
                {
                    "name": "silent-contacts",
                    "category": "contact",
                    "years": 5,
                    "counts_from": "last_interaction",
                },
            ]
        }
    }
)


def crm_history(hubspot: HubSpotStandIn) -> dict[str, Any]:
    """Three contacts HubSpot brings here, with the activities of each:

    - a: three calls and a meeting due under ``old-activities``, one recent call not
      (so a itself is not due);
    - b: last seen in 2016, due whole under ``silent-contacts`` (its call and
      meeting are also old enough for ``old-activities``: counted once);
    - d: one recent call, nothing due."""
    a = hubspot.add("contacts", {"email": "a@kund.se", "firstname": "Ada"})
    b = hubspot.add("contacts", {"email": "b@kund.se", "firstname": "Bo"})
    d = hubspot.add("contacts", {"email": "d@kund.se", "firstname": "Dag"})
    ids: dict[str, Any] = {"a": a, "b": b, "d": d}
    ids["a_due"] = [
        hubspot.add("calls", {"hs_timestamp": f"2018-0{m}-10T09:00:00Z"}, {"contacts": [a]})
        for m in (1, 2, 3)
    ]
    ids["a_meeting"] = hubspot.add(
        "meetings", {"hs_timestamp": "2019-05-05T09:00:00Z"}, {"contacts": [a]}
    )
    ids["a_recent"] = hubspot.add("calls", {"hs_timestamp": CALL_AT}, {"contacts": [a]})
    ids["b_call"] = hubspot.add(
        "calls", {"hs_timestamp": "2015-06-01T09:00:00Z"}, {"contacts": [b]}
    )
    ids["b_meeting"] = hubspot.add(
        "meetings", {"hs_timestamp": "2016-01-01T09:00:00Z"}, {"contacts": [b]}
    )
    ids["d_recent"] = hubspot.add("calls", {"hs_timestamp": CALL_AT}, {"contacts": [d]})
    return ids


def copies(app: Any, as_of: str = AS_OF, policy: Any = POLICY) -> list[tuple[str, str, dict, dict]]:
    with app.app_context():
        preview = retention.preview(day(as_of), policy=policy)
        return [(c.system, c.erasure, c.due, c.owed) for c in preview.copies]


def archived(hubspot: HubSpotStandIn) -> Counter:
    return Counter(
        object_type
        for object_type, found in hubspot.objects.items()
        for record in found.values()
        if record["archived"]
    )


# The preview's counts --------------------------------------------------------------------


def test_the_preview_counts_per_crm_object_what_the_connector_will_delete_and_the_run_does_that(
    app, hubspot
) -> None:
    ids = crm_history(hubspot)
    assert run(app).outcome == "done"
    with app.app_context():
        # A call logged here by hand on a: the activity rule takes it, but
        # HubSpot holds no copy of it, so it is no deletion there.
        crm.log_activity(
            CLI_ACTOR,
            external_ids.find_contact("hubspot", ids["a"]),
            "call",
            at("2018-04-01T10:00:00"),
            None,
        )
        # A contact here only, due whole: nothing of it is in HubSpot.
        consent.register_contact(CLI_ACTOR, "here.only@kund.se", {})
    due = {"calls": 4, "contacts": 1, "meetings": 2}
    assert copies(app, policy=POLICY) == [("connector hubspot", "delete", due, {})]
    # What the run and the next sync do is exactly that.
    with app.app_context():
        retention.run(day(AS_OF), started_by="test", policy=POLICY)
    assert run(app).outcome == "done"
    assert archived(hubspot) == Counter(due)
    assert hubspot.objects["contacts"][ids["b"]]["archived"] is True
    assert not any(
        hubspot.objects["calls"][i]["archived"] for i in (ids["a_recent"], ids["d_recent"])
    )
    # Nothing more is due, nothing is owed.
    assert copies(app) == [("connector hubspot", "delete", {}, {})]


def test_the_preview_shows_the_deletions_still_owed_and_how_they_are_done(
    app, hubspot, monkeypatch
) -> None:
    remote, _ = anna(hubspot)
    run(app)
    with app.app_context():
        erase_contact(CLI_ACTOR, external_ids.find_contact("hubspot", remote))
    # HubSpot fails longer than the retries: the deletions stay owed.
    hubspot.fail(503, times=8, prefix="/crm/v3/objects/calls/", method="DELETE")
    assert run(app).outcome == "unavailable"
    assert copies(app) == [("connector hubspot", "delete", {}, {"calls": 1, "contacts": 1})]
    monkeypatch.setitem(app.config, "HUBSPOT_ERASURE", "anonymise")
    assert copies(app) == [("connector hubspot", "anonymise", {}, {"calls": 1, "contacts": 1})]


def test_the_staff_page_the_api_and_the_command_line_show_the_counts(
    app, hubspot, admin_api, runner_for, monkeypatch
) -> None:
    crm_history(hubspot)
    run(app)
    monkeypatch.setitem(app.extensions, "retention_policy", POLICY)
    page = (
        client_as(app, "admin").get(f"/staff/admin/retention?as_of={AS_OF}").get_data(as_text=True)
    )
    for object_type, count in (("calls", 4), ("contacts", 1), ("meetings", 2)):
        row = f'data-system="connector hubspot" data-object="{object_type}"'
        assert row in page
        cell = page[page.index(row) :].split("</tr>")[0]
        assert f'class="due">{count}<' in cell, cell
    answer = admin_api.get(f"/api/v1/retention/preview?as_of={AS_OF}").json
    assert answer["crm_deletions"] == [
        {
            "system": "connector hubspot",
            "erasure": "delete",
            "due": {"calls": 4, "contacts": 1, "meetings": 2},
            "owed": {},
        }
    ]
    shown = runner_for(app).invoke(args=["retention", "preview", "--as-of", AS_OF])
    assert shown.exit_code == 0, shown.output
    assert "connector hubspot deletes in the CRM" in shown.output
    assert "after this run: 4 calls, 1 contacts, 2 meetings" in shown.output
    as_json = runner_for(app).invoke(args=["retention", "preview", "--as-of", AS_OF, "--json"])
    assert json.loads(as_json.output)["crm_deletions"][0]["due"]["calls"] == 4


# Anonymise instead of delete -------------------------------------------------------------


def everything_in_hubspot(hubspot: HubSpotStandIn) -> str:
    return json.dumps(hubspot.objects).lower()


def test_an_erasure_anonymises_the_contact_and_its_activities_when_configured(
    app, hubspot, monkeypatch
) -> None:
    monkeypatch.setitem(app.config, "HUBSPOT_ERASURE", "anonymise")
    remote, call = anna(hubspot)
    hubspot.objects["calls"][call]["properties"].update(
        {"hs_call_title": "Call with Anna Berg", "hs_call_body": "Anna (anna.berg@kund.se) asked"}
    )
    other = hubspot.add(
        "contacts",
        {
            "email": "bo@kund.se",
            "firstname": "Bo",
            "phone": "070",
            "hs_additional_emails": "bo.privat@post.se",
            "jobtitle": "Head of purchasing",
        },
    )
    run(app)
    with app.app_context():
        for rid in (remote, other):
            erase_contact(CLI_ACTOR, external_ids.find_contact("hubspot", rid))
    assert run(app).outcome == "done"
    contacts = hubspot.objects["contacts"]
    # Kept for HubSpot's reports, but nothing left that names or reaches the person.
    assert not contacts[remote]["archived"] and not hubspot.objects["calls"][call]["archived"]
    for text in ("anna", "berg", "bo@kund.se", "070", "bo.privat@post.se", "head of purchasing"):
        assert text not in everything_in_hubspot(hubspot)
    emails = [contacts[r]["properties"]["email"] for r in (remote, other)]
    assert all(e.startswith("anonymised-") and e.endswith("@anonymised.invalid") for e in emails)
    assert emails[0] != emails[1]  # HubSpot keys contacts by address: one each
    assert {"firstname", "lastname", "phone"}.isdisjoint(contacts[remote]["properties"])
    assert {"hs_call_title", "hs_call_body"}.isdisjoint(
        hubspot.objects["calls"][call]["properties"]
    )
    assert hubspot.calls_to("DELETE", "/crm/v3/objects/") == 0
    # A limit, stated here so that it cannot pass unnoticed: HubSpot keeps
    # subscription statuses per address (communication preferences), and its
    # public API cannot remove them, so the old address stays there, with
    # `anonymise` as with `delete` (docs/connectors.md, "Delete or anonymise").
    assert any(address == "anna.berg@kund.se" for address, _ in hubspot.statuses)
    with app.app_context():
        done = db.session.scalars(sa.select(ConnectorDeletion).order_by(ConnectorDeletion.id)).all()
        assert {(d.object_type, d.erasure, d.done_at is not None) for d in done} == {
            ("calls", "anonymise", True),
            ("contacts", "anonymise", True),
        }
        assert len(done) == 3
    # The anonymised records are read again at the next pass: they bring nobody back.
    run(app)
    assert the_contact(app, remote) is None and the_contact(app, other) is None
    page = client_as(app, "admin").get("/staff/connectors").get_data(as_text=True)
    assert "anonymised (the record stays" in page
    assert "0 deleted, 3 anonymised" in page


def test_a_failed_anonymisation_is_shown_and_retried_like_a_deletion(
    app, hubspot, monkeypatch
) -> None:
    monkeypatch.setitem(app.config, "HUBSPOT_ERASURE", "anonymise")
    remote, call = anna(hubspot)
    run(app)
    with app.app_context():
        erase_contact(CLI_ACTOR, external_ids.find_contact("hubspot", remote))
    hubspot.fail(503, times=8, prefix=f"/crm/v3/objects/calls/{call}")
    assert run(app).outcome == "unavailable"
    assert "berg" in everything_in_hubspot(hubspot)
    with app.app_context():
        owed = db.session.scalars(
            sa.select(ConnectorDeletion).where(ConnectorDeletion.done_at.is_(None))
        ).all()
        assert sorted((d.object_type, d.attempts, d.erasure) for d in owed) == [
            ("calls", 1, "anonymise"),
            ("contacts", 0, None),
        ]
    page = client_as(app, "admin").get("/staff/connectors").get_data(as_text=True)
    assert "HTTP 503" in page and "<td>anonymise</td>" in page
    hubspot.faults.clear()
    assert run(app).outcome == "done"
    assert "berg" not in everything_in_hubspot(hubspot)
    assert not hubspot.objects["contacts"][remote]["archived"]


def test_a_purge_anonymises_the_activities_it_removes_here(app, hubspot, monkeypatch) -> None:
    monkeypatch.setitem(app.config, "HUBSPOT_ERASURE", "anonymise")
    ids = crm_history(hubspot)
    for call in ids["a_due"]:
        hubspot.objects["calls"][call]["properties"]["hs_call_body"] = "Ada wants a quote"
    hubspot.objects["calls"][ids["a_recent"]]["properties"]["hs_call_body"] = "Ada said yes"
    run(app)
    assert copies(app)[0][1] == "anonymise"
    with app.app_context():
        retention.run(day(AS_OF), started_by="test", policy=POLICY)
    run(app)
    calls = hubspot.objects["calls"]
    assert all("hs_call_body" not in calls[c]["properties"] for c in ids["a_due"])
    assert calls[ids["a_recent"]]["properties"]["hs_call_body"] == "Ada said yes"
    assert archived(hubspot) == Counter()
    assert hubspot.objects["contacts"][ids["b"]]["properties"]["email"].endswith(".invalid")


def test_an_unknown_erasure_mode_is_refused_at_start() -> None:
    from kernel.settings.reading import SettingsError, checked_value

    assert checked_value("HUBSPOT_ERASURE", {}) == "delete"
    assert checked_value("HUBSPOT_ERASURE", {"HUBSPOT_ERASURE": " Anonymise "}) == "anonymise"
    with pytest.raises(SettingsError, match="HUBSPOT_ERASURE: must be one of delete, anonymise"):
        checked_value("HUBSPOT_ERASURE", {"HUBSPOT_ERASURE": "shred"})


# History from the CRM --------------------------------------------------------------------


def test_crm_history_older_than_seven_years_is_due_at_once_and_the_preview_shows_it(
    app, hubspot
) -> None:
    """A contact HubSpot brings here whose last call there was in 2018: under
    the shipped rules (seven years, to the year's end) it is due on the first
    run after the sync, and the preview says so, with what HubSpot deletes."""
    old = hubspot.add("contacts", {"email": "gammal@kund.se"})
    hubspot.add("calls", {"hs_timestamp": "2018-06-01T09:00:00Z"}, {"contacts": [old]})
    recent = hubspot.add("contacts", {"email": "ny@kund.se"})
    hubspot.add("calls", {"hs_timestamp": "2019-12-01T09:00:00Z"}, {"contacts": [recent]})
    run(app)
    today = datetime.now(UTC).date().isoformat()
    with app.app_context():
        preview = retention.preview(day(today))
        due = {(o.rule.name, row.contact_id) for o in preview.outcomes for row in o.items}
        old_id = external_ids.find_contact("hubspot", old)
        recent_id = external_ids.find_contact("hubspot", recent)
        assert ("crm-contacts", old_id) in due
        assert all(contact != recent_id for _, contact in due)
        assert [(c.system, c.due) for c in preview.copies] == [
            ("connector hubspot", {"calls": 1, "contacts": 1})
        ]


def test_a_contact_here_first_keeps_its_clock_from_its_creation_here(app, hubspot) -> None:
    """X16 still holds for a contact that was here before HubSpot linked it:
    its creation here is our own record of it, and a HubSpot call dated
    before it does not move its clock back."""
    with app.app_context():
        consent.register_contact(CLI_ACTOR, "anna.berg@kund.se", {})
    remote, _ = anna(hubspot)
    run(app)
    contact = the_contact(app, remote)
    assert contact is not None and contact.last_interaction_at is None


def test_a_crm_call_dated_ahead_counts_as_now(app, hubspot) -> None:
    remote = hubspot.add("contacts", {"email": "snart@kund.se"})
    ahead = datetime.now(UTC) + timedelta(hours=6)
    hubspot.add("calls", {"hs_timestamp": ahead.isoformat()}, {"contacts": [remote]})
    run(app)
    contact = the_contact(app, remote)
    assert contact.last_interaction_at is not None
    assert contact.last_interaction_at <= datetime.now(UTC) < ahead


class _DownAfterFirstPage:
    """The configured HubSpot connector, reading one record a page, whose CRM
    answers 503 to every activity page after the first (the stand-in's
    faults): the first sync's turn ends with only the oldest call read."""

    def __init__(self, inner: Any, standin: HubSpotStandIn) -> None:
        self.inner, self.standin = inner, standin
        inner.page_size = 1

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def activities(self, object_type: str, after: str | None, since: Any = None) -> Any:
        if after is not None:
            self.standin.fail(503, times=100, prefix=f"/crm/v3/objects/{object_type}")
        return self.inner.activities(object_type, after, since)


def test_a_contact_is_kept_until_the_first_sync_has_read_its_whole_history(app, hubspot) -> None:
    """HubSpot lists old calls first, and a large first sync spans many turns.
    A run between two turns must not purge a contact the sync created on the
    strength of the only call read so far (2015), while its 2024 call is
    still unread: it is excluded, with the reason on the preview, until the
    connector has read contacts and every interaction type once; then the
    2024 call dates it and it is not due."""
    from connectors import config, sync
    from connectors.base import RetryPolicy

    remote = hubspot.add("contacts", {"email": "lang@kund.se"})
    hubspot.add("calls", {"hs_timestamp": "2015-03-01T09:00:00Z"}, {"contacts": [remote]})
    hubspot.add("calls", {"hs_timestamp": "2024-03-01T09:00:00Z"}, {"contacts": [remote]})
    today = datetime.now(UTC).date().isoformat()
    with app.app_context():
        connector = _DownAfterFirstPage(config.build("hubspot"), hubspot)
        policy = RetryPolicy(tries=2, backoff_s=0, max_wait_s=0, sleep=lambda _: None)
        assert sync.sync("hubspot", connector=connector, policy=policy).outcome == "unavailable"  # type: ignore[arg-type]
        db.session.remove()
    hubspot.faults.clear()
    contact = the_contact(app, remote)
    assert contact.last_interaction_at == datetime(2015, 3, 1, 9, tzinfo=UTC)
    reason = "the first sync of hubspot has not finished reading its history"
    with app.app_context():
        preview = retention.preview(day(today))
        assert all(row.contact_id != contact.id for o in preview.outcomes for row in o.items)
        excluded = {(row.contact_id, why) for o in preview.outcomes for row, why in o.excluded}
        assert (contact.id, reason) in excluded
        outlook = retention.purge_outlook(db.session.get(Contact, contact.id))
        assert outlook.excluded_because == reason
        retention.run(day(today), started_by="test")
        db.session.remove()
    assert the_contact(app, remote) is not None
    assert not [w for w in hubspot.writes() if w[0] == "DELETE"]

    assert run(app).outcome == "done"
    contact = the_contact(app, remote)
    assert contact.last_interaction_at == datetime(2024, 3, 1, 9, tzinfo=UTC)
    with app.app_context():
        preview = retention.preview(day(today))
        assert all(row.contact_id != contact.id for o in preview.outcomes for row in o.items)
        assert all(row.contact_id != contact.id for o in preview.outcomes for row, _ in o.excluded)


def test_a_full_resync_or_a_new_interaction_type_holds_the_contacts_until_read(
    app, hubspot, monkeypatch
) -> None:
    """Once every read has passed, the contacts count from what was read; a
    full resync (a first sync again) or an interaction type added to the
    settings holds them back until every read has passed again. The
    exclusions cost two queries for any number of contacts."""
    from connectors import services, sync

    remotes = [hubspot.add("contacts", {"email": f"k{i}@kund.se"}) for i in range(5)]
    for remote in remotes:
        hubspot.add("calls", {"hs_timestamp": "2015-03-01T09:00:00Z"}, {"contacts": [remote]})
    assert run(app).outcome == "done"
    ids = [the_contact(app, r).id for r in remotes]
    with app.app_context():
        assert retention.retention_exclusions(ids) == {}
        services.full_resync(CLI_ACTOR, "hubspot")
        assert set(retention.retention_exclusions(ids)) == set(ids)
        db.session.remove()
    assert run(app).outcome == "done"
    with app.app_context():
        assert retention.retention_exclusions(ids) == {}
        monkeypatch.setitem(app.config, "HUBSPOT_INTERACTIONS", ["calls", "meetings", "emails"])
        hubspot.fail(503, times=100, prefix="/crm/v3/objects/emails")
        db.session.remove()
    assert run(app).outcome == "unavailable"
    hubspot.faults.clear()
    with app.app_context():
        statements: list[str] = []

        def note(*args: Any) -> None:
            statements.append(args[2])

        sa.event.listen(db.engine, "before_cursor_execute", note)
        try:
            found = services.first_sync_exclusions(app, contact_ids=ids)
        finally:
            sa.event.remove(db.engine, "before_cursor_execute", note)
        assert len(statements) == 2
        assert set(found) == set(ids)
        state = db.session.get(sync.ConnectorState, "hubspot")
        assert sync.SETTLED not in state.cursors
        db.session.remove()
    assert run(app).outcome == "done"
    with app.app_context():
        assert retention.retention_exclusions(ids) == {}
