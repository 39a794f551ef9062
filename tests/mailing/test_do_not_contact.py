"""A "no" outlives erasure and purge (docs/rules.md R22, X5; issue 19 item 1).

Every refusal keeps a keyed hash of the address scoped to what was refused:
all marketing (the suppression list), one topic or one channel (a scoped
entry). A retention purge or an erasure removes the contact, the entry stays,
and when the address comes back by any way in (the API, a CSV import through
the API or the staff page, a signup form, a rectified address) the refusal
is restated in its ledger: only the person's own double opt-in reopens it.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa

from consent.models import ScopedSuppression
from crm.models import Contact
from extensions import db
from tests.conftest import count_rows, finish_imports
from tests.mailing.conftest import link
from tests.mailing.helpers import signup
from tests.staff.helpers import client_as


@pytest.fixture(autouse=True)
def _import_worker(import_worker: Any) -> None:
    """The API and the staff page hand their imports to a worker."""


EMAIL = "eva@kund.se"
LIVE_CUSTOMER = {"name": "Kund AB", "country": "SE", "customer_since": "2020-01-01"}
CUSTOMER = {"type": "legitimate_interest", "kind": "customer", "source": "crm-sync"}
INDUSTRY = {"type": "legitimate_interest", "kind": "industry_list", "source": "list-2026"}
TODAY = datetime.now(UTC).date()


def register(api: Any, email: str = EMAIL, basis: dict[str, Any] = CUSTOMER) -> int:
    response = api.post(
        "/api/v1/contacts",
        json={"email": email, "country": "SE", "company": LIVE_CUSTOMER, "basis": basis},
    )
    assert response.status_code in (200, 201), response.json
    return int(response.json["id"])


def contact_id(api: Any, email: str = EMAIL) -> int:
    response = api.get("/api/v1/contacts", query_string={"email": email})
    assert response.status_code == 200, response.json
    return int(response.json["id"])


def decision(api: Any, email: str, topic: str, channel: str = "email") -> tuple[bool, str]:
    decisions = api.get(f"/api/v1/contacts/{contact_id(api, email)}/permissions").json
    found = next(
        d for d in decisions["decisions"] if d["topic"] == topic and d["channel"] == channel
    )
    return found["allowed"], found["reason"]


def entries(app: Any) -> list[tuple[str, str, str]]:
    with app.app_context():
        rows = db.session.scalars(sa.select(ScopedSuppression)).all()
        found = sorted((r.topic, r.channel, r.kind) for r in rows)
        db.session.remove()
    return found


def one_click(app: Any, client: Any, email: str, topic: str) -> None:
    """The RFC 8058 one-click POST of a marketing email about ``topic``."""
    from mailing.messages import unsubscribe_url

    with app.test_request_context():
        cid = db.session.scalar(sa.select(Contact.id).where(Contact.email == email))
        url = unsubscribe_url(cid, topic) + "/one-click"
        db.session.remove()
    response = client.post(
        url.removeprefix("http://localhost"), data={"List-Unsubscribe": "One-Click"}
    )
    assert response.status_code == 200


def purge(app: Any) -> None:
    """The contact's last interaction lies long ago: the retention run deletes it."""
    with app.app_context():
        db.session.execute(
            sa.update(Contact).values(
                created_at=datetime(2000, 1, 1, tzinfo=UTC),
                last_interaction_at=datetime(2000, 1, 1, tzinfo=UTC),
            )
        )
        db.session.commit()
        db.session.remove()
    result = app.test_cli_runner().invoke(args=["retention", "run", "--as-of", TODAY.isoformat()])
    assert result.exit_code == 0, result.output
    assert count_rows(app)["contact"] == 0


def import_file(api: Any, basis: str = "customer", email: str = EMAIL) -> dict[str, Any]:
    content = f"email,name,country\n{email},Eva Lind,SE\n".encode()
    response = api.client.post(
        "/api/v1/imports",
        data={"basis": basis, "source": "Mässan 2026", "file": (io.BytesIO(content), "l.csv")},
        headers=api.headers,
        content_type="multipart/form-data",
    )
    assert response.status_code == 202, response.json
    finish_imports()
    return dict(api.get(response.headers["Location"]).json)


def staff_import(app: Any, basis: str = "customer", email: str = EMAIL) -> None:
    content = f"email,name,country\n{email},Eva Lind,SE\n".encode()
    response = client_as(app, "marketing").post(
        "/staff/imports",
        data={"basis": basis, "source": "Mässan 2026", "file": (io.BytesIO(content), "l.csv")},
        content_type="multipart/form-data",
    )
    assert response.status_code in (302, 303), response.get_data(as_text=True)
    finish_imports()


def rectify_into(api: Any, email: str = EMAIL) -> None:
    """Another customer contact whose address is corrected to the refused one."""
    other = register(api, "maria@kund.se")
    response = api.patch(f"/api/v1/contacts/{other}", json={"email": email})
    assert response.status_code == 200, response.json


WAYS_BACK: dict[str, Callable[[Any, Any, Any], None]] = {
    "api": lambda app, client, api: (register(api), None)[1],
    "api-import": lambda app, client, api: (import_file(api), None)[1],
    "staff-import": lambda app, client, api: staff_import(app),
    "rectification": lambda app, client, api: rectify_into(api),
}


@pytest.mark.parametrize("way_back", list(WAYS_BACK))
def test_a_topic_unsubscribe_survives_a_purge_and_blocks_every_way_back(
    app, client, admin_api, way_back: str
) -> None:
    """Topic scope: the person one-clicked out of events. The contact is purged
    by retention; when the address returns as a customer, events stay closed
    (restated in its ledger by the service) while the topics never refused
    are open on legitimate interest."""
    register(admin_api)
    assert decision(admin_api, EMAIL, "events") == (True, "customer")
    one_click(app, client, EMAIL, "events")
    assert entries(app) == [("events", "email", "unsubscribed")]

    purge(app)
    assert entries(app) == [("events", "email", "unsubscribed")]
    assert count_rows(app)["suppression"] == 0

    WAYS_BACK[way_back](app, client, admin_api)
    assert decision(admin_api, EMAIL, "events") == (False, "unsubscribed")
    assert decision(admin_api, EMAIL, "product-updates") == (True, "customer")
    events = admin_api.get(f"/api/v1/contacts/{contact_id(admin_api)}/events").json
    restated = [e for e in events if e["kind"] == "unsubscribed"]
    assert [(e["topic"], e["channel"], e["source"]) for e in restated] == [
        ("events", "email", "system")
    ]
    assert "do-not-contact" in restated[0]["note"]


@pytest.mark.parametrize("way_back", list(WAYS_BACK))
def test_a_phone_only_objection_survives_a_purge_and_blocks_every_way_back(
    app, client, admin_api, way_back: str
) -> None:
    """Channel scope: the person objected to phone marketing only (staff took it
    on the phone). After a purge and a return, phone stays closed on every
    topic and email marketing is open as before."""
    cid = register(admin_api)
    response = admin_api.post(
        f"/api/v1/contacts/{cid}/objection", json={"channel": "phone", "received_via": "phone"}
    )
    assert response.status_code == 201, response.json
    assert entries(app) == [("*", "phone", "objected")]

    purge(app)
    WAYS_BACK[way_back](app, client, admin_api)
    for topic in ("events", "product-updates", "surveys"):
        assert decision(admin_api, EMAIL, topic, "phone") == (False, "objection")
        assert decision(admin_api, EMAIL, topic, "email") == (True, "customer")


def test_a_topic_refusal_survives_a_purge_and_a_signup_and_only_the_persons_confirmation_reopens(
    app, client, admin_api, smtp, mail_worker
) -> None:
    """Signup: the returning address asks for events on the form. The form alone
    does not reopen what the person closed (the decision stays unsubscribed,
    and the double opt-in goes out whatever the country); the person's own
    confirmation through the emailed link does, and lifts the entry."""
    register(admin_api)
    one_click(app, client, EMAIL, "events")
    purge(app)

    assert signup(client, EMAIL, topics="events", consent="on").status_code == 200
    assert decision(admin_api, EMAIL, "events") == (False, "unsubscribed")
    assert entries(app) == [("events", "email", "unsubscribed")]

    mail_worker.drain()
    assert client.post(link(smtp.wait_for(1)[0], "/confirm/")).status_code == 200
    assert decision(admin_api, EMAIL, "events") == (True, "consent")
    assert entries(app) == []


def test_staff_and_api_never_lift_a_topic_refusal(app, client, admin_api) -> None:
    """A CRM's consent to the refused topic, synced after the return, is kept in
    the ledger but neither opens the topic nor removes the entry."""
    register(admin_api)
    one_click(app, client, EMAIL, "events")
    purge(app)
    consent = {
        "type": "consent",
        "source": "webinar-crm",
        "topics": ["events"],
        "evidence": {
            "obtained_at": datetime.now(UTC).isoformat(),
            "policy_version": "1.0",
            "wording": "Yes, send me news about events.",
        },
    }
    register(admin_api, basis=consent)
    assert decision(admin_api, EMAIL, "events") == (False, "unsubscribed")
    assert entries(app) == [("events", "email", "unsubscribed")]


def test_a_topic_refusal_at_the_mailbox_blocks_its_sub_addresses(app, client, admin_api) -> None:
    """X5: a refusal at anna@ is restated for anna+x@ (the same mailbox)."""
    register(admin_api)
    one_click(app, client, EMAIL, "events")
    purge(app)
    register(admin_api, "eva+crm@kund.se")
    assert decision(admin_api, "eva+crm@kund.se", "events") == (False, "unsubscribed")
    assert decision(admin_api, "eva+crm@kund.se", "surveys") == (True, "customer")


def test_erasure_keeps_an_entry_so_the_same_purchased_list_does_not_bring_the_person_back(
    app, admin_api
) -> None:
    """All scope: a person on an industry list who never said no asks to be
    erased. The same list, imported again, skips the address."""
    assert import_file(admin_api, "industry_list")["created"] == 1
    cid = contact_id(admin_api)
    assert admin_api.delete(f"/api/v1/contacts/{cid}").json["suppression_kept"] is True
    assert count_rows(app)["contact"] == 0

    report = import_file(admin_api, "industry_list")
    assert (report["created"], report["skipped_suppressed"]) == (0, 1)
    assert count_rows(app)["contact"] == 0


@pytest.mark.parametrize("way_back", list(WAYS_BACK))
def test_an_erased_topic_refusal_comes_back_as_a_suppression_on_every_way_in(
    app, client, admin_api, way_back: str
) -> None:
    """All scope after erasure: the erasure adds the all-marketing entry on top
    of the topic's, so a return by any way in is never marketed to."""
    register(admin_api)
    one_click(app, client, EMAIL, "events")
    admin_api.delete(f"/api/v1/contacts/{contact_id(admin_api)}")
    assert count_rows(app)["suppression"] == 1
    WAYS_BACK[way_back](app, client, admin_api)
    for topic in ("events", "product-updates"):
        for channel in ("email", "phone"):
            assert decision(admin_api, EMAIL, topic, channel) == (False, "suppressed")


def test_a_phone_only_objection_survives_a_purge_and_a_signup(
    app, client, admin_api, smtp, mail_worker
) -> None:
    """Channel scope and the signup form: the returning person confirms events
    by email; phone marketing stays closed, since the confirmation was about
    email and never about the objection to phone calls."""
    cid = register(admin_api)
    admin_api.post(
        f"/api/v1/contacts/{cid}/objection", json={"channel": "phone", "received_via": "phone"}
    )
    purge(app)
    assert signup(client, EMAIL, topics="events", consent="on").status_code == 200
    assert decision(admin_api, EMAIL, "events", "phone") == (False, "objection")
    mail_worker.drain()
    client.post(link(smtp.wait_for(1)[0], "/confirm/"))
    assert decision(admin_api, EMAIL, "events", "email") == (True, "consent")
    # The confirmation lifts the objection into an unsubscribe (X6): still closed.
    assert decision(admin_api, EMAIL, "events", "phone")[0] is False
    assert entries(app) == [("*", "phone", "objected")]


def with_keep_years(app: Any, years: int | None) -> Any:
    policy = app.extensions["marketing_policy"]
    app.extensions["marketing_policy"] = dataclasses.replace(policy, do_not_contact_years=years)
    return policy


@pytest.mark.parametrize("keep_years", [None, 10])
def test_the_retention_run_drops_entries_only_after_the_policy_files_period(
    app, client, admin_api, keep_years: int | None
) -> None:
    """[do_not_contact] keep_years: without it the entries are kept without end;
    with it, the daily run drops the entries older than that (both kinds) and
    records how many, and keeps the younger ones."""
    register(admin_api)
    one_click(app, client, EMAIL, "events")
    register(admin_api, "olle@kund.se")
    admin_api.delete(f"/api/v1/contacts/{contact_id(admin_api, 'olle@kund.se')}")
    register(admin_api, "nils@kund.se")
    one_click(app, client, "nils@kund.se", "surveys")
    with app.app_context():
        # Eva's and Olle's entries were made eleven years ago; Nils's today.
        old = datetime(TODAY.year - 11, 1, 1, tzinfo=UTC)
        scoped = db.metadata.tables["scoped_suppression"]
        db.session.execute(sa.update(db.metadata.tables["suppression"]).values(created_at=old))
        db.session.execute(
            sa.update(scoped).where(scoped.c.topic == "events").values(created_at=old)
        )
        db.session.commit()
        db.session.remove()
    original = with_keep_years(app, keep_years)
    try:
        purge(app)
    finally:
        app.extensions["marketing_policy"] = original
    kept = entries(app)
    if keep_years is None:
        assert kept == [("events", "email", "unsubscribed"), ("surveys", "email", "unsubscribed")]
        assert count_rows(app)["suppression"] == 1
    else:
        assert kept == [("surveys", "email", "unsubscribed")]
        assert count_rows(app)["suppression"] == 0
        with app.app_context():
            from crm.models import RetentionRun

            last = db.session.scalars(sa.select(RetentionRun).order_by(RetentionRun.id)).all()[-1]
            assert last.counts["do-not-contact-all-marketing"]["deleted"] == 1
            assert last.counts["do-not-contact-scoped"]["deleted"] == 1
            db.session.remove()


def test_the_policy_files_keep_years_is_checked_at_start(app) -> None:
    from consent.topics import MarketingPolicy

    base = {"topics": {"news": {"bases": ["consent"]}}}
    assert MarketingPolicy.from_mapping(base).do_not_contact_years is None
    assert (
        MarketingPolicy.from_mapping(
            {**base, "do_not_contact": {"keep_years": 10}}
        ).do_not_contact_years
        == 10
    )
    for bad in ({"keep_years": 0}, {"keep_years": "10"}, {"keep_years": True}, {"keep": 1}):
        with pytest.raises(RuntimeError, match="do_not_contact"):
            MarketingPolicy.from_mapping({**base, "do_not_contact": bad})
