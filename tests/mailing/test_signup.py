"""The signup endpoint as other sites and robots use it."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from extensions import db
from kernel.timestamps import utcnow
from tests.conftest import count_rows
from tests.mailing.conftest import link
from tests.mailing.helpers import contact_id_of, decision, events, outbox, signup

# The example form on another site registered in consent/default_policy.toml
# ([forms.website-footer]); it lists no origins of its own, so the sites in
# SIGNUP_ALLOWED_ORIGINS may post it.
SITE_FORM = "website-footer"
SITE = "https://www.example.se"


@pytest.fixture(autouse=True)
def _partner_site(app, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setitem(app.config, "SIGNUP_ALLOWED_ORIGINS", [SITE])


def site_post(client, address, *, country=None, topics=("events",), consent=True, **extra):  # type: ignore[no-untyped-def]
    body = {
        "email": address,
        "topics": list(topics),
        "consent": consent,
        "form_id": SITE_FORM,
        "page_url": f"{SITE}/events",
        **extra,
    }
    if country:
        body["country"] = country
    return client.post("/subscribe", json=body, headers={"Origin": SITE})


def test_a_ticked_box_from_a_country_without_the_double_opt_in_rule_is_consent_at_once(
    app, client, admin_api
) -> None:
    response = site_post(client, "lars@example.se", country="SE")
    assert response.status_code == 202
    contact_id = contact_id_of(app, "lars@example.se")
    allowed = decision(admin_api, contact_id, "events")
    assert (allowed["allowed"], allowed["basis"]) == (True, "consent")
    confirmed = [e for e in events(admin_api, contact_id) if e["kind"] == "confirmed"]
    assert confirmed[0]["source"] == "form"
    assert confirmed[0]["form_id"] == SITE_FORM
    assert confirmed[0]["page_url"] == "https://www.example.se/events"
    # No confirmation email; the person is told at once instead, with an undo
    # (tests/mailing/test_forged_signups.py follows that email).
    assert [row.template for row in outbox(app)] == ["subscribed"]


@pytest.mark.parametrize(
    ("country", "topics", "consent"),
    [
        ("DE", ("events",), True),  # R8: a listed country
        ("SE", ("newsletter",), True),  # the newsletter always
        (None, ("events",), True),  # unknown country counts as listed
        ("SE", ("events",), False),  # no ticked box
    ],
)
def test_everything_else_goes_through_double_opt_in(
    app, client, admin_api, country, topics, consent
) -> None:
    site_post(client, "doi@example.de", country=country, topics=topics, consent=consent)
    contact_id = contact_id_of(app, "doi@example.de")
    assert decision(admin_api, contact_id, topics[0])["reason"] == "pending_confirmation"
    assert [row.template for row in outbox(app)] == ["confirm"]


def _prepare_known_subscribed_and_suppressed(app, admin_api, client, smtp, mail_worker):  # type: ignore[no-untyped-def]
    admin_api.post("/api/v1/contacts", json={"email": "known@example.se", "country": "SE"})
    objected = admin_api.post("/api/v1/contacts", json={"email": "objected@example.se"})
    admin_api.post(
        f"/api/v1/contacts/{objected.json['id']}/objection", json={"received_via": "phone"}
    )
    signup(client, "subscribed@example.se")
    mail_worker.drain()
    client.post(link(smtp.wait_for(1)[0], "/confirm/"))
    mail_worker.drain()


@pytest.mark.parametrize("as_json", [False, True])
def test_the_response_is_the_same_for_every_kind_of_address(
    app, client, admin_api, smtp, mail_worker, as_json
) -> None:
    _prepare_known_subscribed_and_suppressed(app, admin_api, client, smtp, mail_worker)
    answers = set()
    for address in (
        "unknown@example.se",
        "known@example.se",
        "subscribed@example.se",
        "objected@example.se",
    ):
        if as_json:
            response = site_post(client, address, topics=("newsletter",))
        else:
            response = signup(client, address)
        answers.add((response.status_code, response.get_data(as_text=True)))
    assert len(answers) == 1


def test_every_signup_is_answered_no_sooner_than_the_floor(app, client, monkeypatch) -> None:
    # A new address stores a contact and a known one does not; the floor keeps
    # that difference out of the answer's timing (the enumeration test in
    # tests/reliability measures it).
    monkeypatch.setitem(app.config, "SIGNUP_MIN_SECONDS", 0.05)
    for address in ("new@example.se", "new@example.se", "bot@example.se"):
        started = time.monotonic()
        extra = {"website": "http://spam.example"} if address.startswith("bot") else {}
        response = signup(client, address, **extra)
        elapsed = time.monotonic() - started
        assert response.status_code == 200
        assert elapsed >= 0.05, (address, elapsed)
    assert contact_id_of(app, "new@example.se") is not None
    assert contact_id_of(app, "bot@example.se") is None


def test_a_suppressed_address_comes_back_only_through_its_own_confirmation(
    app, client, admin_api, smtp, mail_worker
) -> None:
    created = admin_api.post(
        "/api/v1/contacts",
        json={
            "email": "back@example.se",
            "country": "SE",
            "basis": {"type": "legitimate_interest", "kind": "customer", "source": "crm"},
        },
    )
    contact_id = created.json["id"]
    admin_api.post(f"/api/v1/contacts/{contact_id}/objection", json={"received_via": "phone"})
    site_post(client, "back@example.se", country="SE", topics=("events",))  # ticked box, SE
    assert decision(admin_api, contact_id, "events")["reason"] == "objection"

    mail_worker.drain()
    [confirmation] = smtp.wait_for(1)
    client.post(link(confirmation, "/confirm/"))
    kinds = [e["kind"] for e in events(admin_api, contact_id)]
    lifted = kinds.index("objection_lifted")
    assert kinds[lifted + 1] == "unsuppressed"
    assert kinds[lifted + 2] == "confirmed"
    allowed = decision(admin_api, contact_id, "events")
    assert (allowed["allowed"], allowed["reason"]) == (True, "consent")
    # Legitimate interest stays closed: only what the person confirmed opens again.
    assert decision(admin_api, contact_id, "product-updates")["allowed"] is False


def test_the_honeypot_answers_like_a_person_but_records_nothing(app, client) -> None:
    before = count_rows(app)
    trap = signup(client, "robot@example.se", website="http://spam.example")
    person = signup(client, "person@example.se")
    assert trap.status_code == person.status_code == 200
    assert trap.data == person.data
    assert contact_id_of(app, "robot@example.se") is None
    assert count_rows(app)["consent_event"] == before["consent_event"] + 1


def test_at_most_one_confirmation_email_per_address_in_ten_minutes(app, client) -> None:
    for _ in range(3):
        signup(client, "eager@example.se")
    signup(client, "eager@example.se", topics="events")
    rows = outbox(app)
    assert [row.template for row in rows] == ["confirm"]
    with app.app_context():
        from consent.evidence import Evidence
        from consent.models import SubscriptionRequest
        from consent.subscriptions import Signup
        from mailing import subscription_flows

        [request] = db.session.query(SubscriptionRequest).all()
        assert request.topic_keys == ["newsletter", "events"]  # one request, merged
        subscription_flows.subscribe(
            Signup(email="eager@example.se", topics=("newsletter",)),
            evidence=Evidence(),
            at=utcnow() + timedelta(minutes=11),
        )
    assert [row.template for row in outbox(app)] == ["confirm", "confirm"]


def test_a_form_on_a_site_that_is_not_allowed_is_refused(app, client) -> None:
    before = count_rows(app)
    form = {"email": "x@example.se", "topics": "newsletter", "form_id": SITE_FORM}
    refused = client.post("/subscribe", data=form, headers={"Origin": "https://evil.example"})
    assert refused.status_code == 403
    assert count_rows(app) == before

    allowed = client.post("/subscribe", data=form, headers={"Origin": SITE})
    assert allowed.status_code == 200
    assert contact_id_of(app, "x@example.se") is not None


def test_a_site_form_must_name_a_registered_form(app, client) -> None:
    # What a form showed is proven by its registration, not by the post: a post
    # naming no registered form (whatever wording it sends) records nothing.
    before = count_rows(app)
    for body in (
        {"email": "x@example.se", "topics": ["newsletter"]},
        {"email": "x@example.se", "topics": ["newsletter"], "wording": "Yes, send me news."},
        {"email": "x@example.se", "topics": ["newsletter"], "form_id": "site-footer"},
    ):
        response = client.post("/subscribe", json=body, headers={"Origin": "http://localhost"})
        assert response.status_code == 422
        assert response.json["error"]["code"] == "unknown_form"
    assert count_rows(app) == before


@pytest.mark.parametrize(
    "body",
    [
        {"email": "not-an-address", "topics": ["newsletter"]},
        {"email": "x@example.se", "topics": ["no-such-topic"]},
        {"email": "x@example.se", "topics": []},
        # a topic the form does not ask for: its wording never offered it
        {"email": "x@example.se", "topics": ["surveys"]},
    ],
)
def test_bad_signups_are_422_and_change_nothing(app, client, body) -> None:
    before = count_rows(app)
    response = client.post("/subscribe", json={"form_id": SITE_FORM, **body})
    assert response.status_code == 422
    assert "error" in response.json
    assert count_rows(app) == before


def test_two_forms_posting_one_address_at_once_leave_one_contact_and_one_request(
    app, database_url
) -> None:
    import threading

    from consent.models import SubscriptionRequest
    from crm.models import Contact

    barrier = threading.Barrier(6)
    statuses: list[int] = []

    def post() -> None:
        client = app.test_client()
        barrier.wait()
        statuses.append(signup(client, "twice@example.se").status_code)

    threads = [threading.Thread(target=post) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [200] * 6
    with app.app_context():
        assert db.session.query(Contact).count() == 1
        assert db.session.query(SubscriptionRequest).count() == 1
        db.session.remove()
    assert [row.template for row in outbox(app)] == ["confirm"]


def test_rate_limits_per_address_answer_429(app, database_url) -> None:
    from app import create_app
    from extensions import limiter
    from tests.conftest import TEST_CONFIG

    limited = create_app(
        {
            **TEST_CONFIG,
            "SQLALCHEMY_DATABASE_URI": database_url,
            "RATELIMIT_ENABLED": True,
            "SIGNUP_LIMIT_PER_ADDRESS": "2 per hour",
        }
    )
    try:
        client = limited.test_client()
        codes = [signup(client, "limited@example.se").status_code for _ in range(3)]
        other = signup(client, "other@example.se").status_code
    finally:
        limiter.enabled = False
        with limited.app_context():
            limiter.reset()
    assert codes == [200, 200, 429]
    assert other == 200


def test_an_allowed_site_may_post_json_with_fetch_and_read_the_answer(app, client) -> None:
    preflight = client.options(
        "/subscribe",
        headers={
            "Origin": SITE,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "Content-Type",
        },
    )
    other = client.options("/subscribe", headers={"Origin": "https://evil.example"})
    posted = client.post(
        "/subscribe",
        json={"email": "fetch@example.se", "topics": ["newsletter"], "form_id": SITE_FORM},
        headers={"Origin": SITE},
    )
    assert preflight.status_code == 200
    assert preflight.headers["Access-Control-Allow-Origin"] == SITE
    assert "Content-Type" in preflight.headers["Access-Control-Allow-Headers"]
    assert "Access-Control-Allow-Origin" not in other.headers
    assert posted.status_code == 202
    assert posted.headers["Access-Control-Allow-Origin"] == SITE


def test_a_signup_records_the_published_policy_version(app, client, admin_api) -> None:
    published = admin_api.post(
        "/api/v1/policies", json={"version": "2.0", "url": "https://www.example.se/privacy"}
    )
    assert published.status_code == 201
    site_post(client, "ny@example.se", country="SE")
    contact_id = contact_id_of(app, "ny@example.se")
    confirmed = [e for e in events(admin_api, contact_id) if e["kind"] == "confirmed"]
    assert confirmed[0]["policy_version"] == "2.0"
