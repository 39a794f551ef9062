"""Nobody but the person undoes the person's "no" (docs/rules.md X6, R9).

A marketing token once re-synced a consent with ``"source": "double_opt_in"``
and turned a contact who had unsubscribed back into ``consent``: the fold
recognised the person's own confirmation by the free-text source alone. Now
only a confirmation this service verified counts (the person pressing the
button behind the double opt-in link it emailed), and the API refuses a
source reserved for the service's own links.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from consent.evidence import Evidence
from consent.ledger import record
from consent.models import Basis, EventKind, SubscriptionRequest
from consent.subscriptions import (
    DOUBLE_OPT_IN,
    PERSON,
    Scope,
    Signup,
    confirm_subscription,
    request_subscription,
    unsubscribe,
)
from crm.models import Contact
from extensions import db
from kernel.access import Actor
from tests.consent.test_policy_rules_pinned import (
    audience,
    batch,
    consent_to,
    in_app,
    outcome,
    register,
    single,
)

EMAIL = "jonas@kund.se"
LINK_EVIDENCE = Evidence(ip_address="192.0.2.1", form_id="hosted", language="en")


def unsubscribed_from_events(app, api) -> int:
    """A contact who consented to events (synced by the CRM), then unsubscribed
    from events through the link in a mail."""
    now = datetime.now(UTC)
    contact_id = register(
        api, EMAIL, country="SE", basis=consent_to(["events"], now - timedelta(days=10))
    )
    in_app(
        app,
        EMAIL,
        lambda contact: unsubscribe(
            contact,
            Scope.TOPIC,
            topic="events",
            source="email_link",
            evidence=LINK_EVIDENCE,
            at=now - timedelta(days=5),
        ),
    )
    assert outcome(single(api, contact_id, "events"))[:2] == (False, "unsubscribed")
    return contact_id


@pytest.mark.parametrize("source", ["double_opt_in", "Double_Opt_In", "one_click", "system"])
def test_a_marketing_token_cannot_reopen_an_unsubscribe_by_naming_the_double_opt_in(
    app, api_as, source: str
) -> None:
    """The attack over HTTP: a marketing token posts a consent to the topic the
    person left, claiming the double opt-in as its source. It is refused with
    a clear message, nothing is written, and the person stays unsubscribed."""
    marketing = api_as("marketing")
    contact_id = unsubscribed_from_events(app, marketing)
    before = marketing.get(f"/api/v1/contacts/{contact_id}/events").json

    forged = consent_to(["events"], datetime.now(UTC) - timedelta(minutes=15))
    forged["source"] = source
    response = marketing.post("/api/v1/contacts", json={"email": EMAIL, "basis": forged})

    assert response.status_code == 422
    assert response.json["error"]["code"] == "reserved_source"
    assert "reserved" in response.json["error"]["message"]
    assert marketing.get(f"/api/v1/contacts/{contact_id}/events").json == before
    assert outcome(single(marketing, contact_id, "events"))[:2] == (False, "unsubscribed")
    assert outcome(batch(marketing, EMAIL, "events"))[:2] == (False, "unsubscribed")
    assert contact_id not in audience(app, "events")


def test_a_crm_consent_under_its_own_source_is_kept_but_does_not_reopen(app, api_as) -> None:
    """The same sync under an honest source is taken into the ledger (the claim
    is kept as evidence) and changes no decision."""
    marketing = api_as("marketing")
    contact_id = unsubscribed_from_events(app, marketing)
    synced = consent_to(["events"], datetime.now(UTC) - timedelta(minutes=15))
    assert marketing.post(
        "/api/v1/contacts", json={"email": EMAIL, "basis": synced}
    ).status_code in (
        200,
        201,
    )
    assert outcome(single(marketing, contact_id, "events"))[:2] == (False, "unsubscribed")


def confirmed_after_the_no(
    app, actor: Actor, source_ref: str | None, *, request_for: str, request_of: str = EMAIL
) -> None:
    """Record a confirmation of events straight into the ledger, as a path that
    bypassed the API's check would."""
    with app.app_context():
        contact = db.session.scalar(sa.select(Contact).where(Contact.email == EMAIL))
        # A real open request of ``request_of``, for ``request_for``: the link's id.
        signup = Signup(email=request_of, topics=(request_for,))
        request = request_subscription(signup, LINK_EVIDENCE, datetime.now(UTC)).request
        assert request is not None
        ref = source_ref.format(id=request.id) if source_ref else None
        record(
            contact,
            EventKind.CONFIRMED,
            actor=actor,
            source=DOUBLE_OPT_IN,
            topic="events",
            channel="email",
            basis=Basis.CONSENT.value,
            source_ref=ref,
        )
        db.session.commit()
        db.session.remove()


@pytest.mark.parametrize(
    ("actor", "source_ref", "request_for"),
    [
        pytest.param(
            Actor(kind="token", name="crm"), "subscription_request:{id}", "events", id="a-token"
        ),
        pytest.param(
            Actor(kind="user", name="anna@firma.se"),
            "subscription_request:{id}",
            "events",
            id="staff",
        ),
        pytest.param(PERSON, None, "events", id="no-request"),
        pytest.param(PERSON, "subscription_request:999999", "events", id="unknown-request"),
        pytest.param(
            PERSON, "subscription_request:{id}", "newsletter", id="request-for-another-topic"
        ),
    ],
)
def test_only_the_services_own_confirmation_reopens_in_the_fold(
    app, admin_api, actor: Actor, source_ref: str | None, request_for: str
) -> None:
    """The fold itself (consent.projection.is_person_verified) takes a "yes"
    after a "no" only from the person, with the double opt-in source and the
    id of an open subscription request of this contact for this topic: a
    token's or staff member's claim, or the person without a real request for
    the topic, keeps the topic closed."""
    contact_id = unsubscribed_from_events(app, admin_api)
    confirmed_after_the_no(app, actor, source_ref, request_for=request_for)
    assert outcome(single(admin_api, contact_id, "events"))[:2] == (False, "unsubscribed")
    assert contact_id not in audience(app, "events")


def test_a_request_of_another_address_does_not_reopen(app, admin_api) -> None:
    """The person of another address confirming their own request never opens
    this contact's topic, even when the event names that request."""
    contact_id = unsubscribed_from_events(app, admin_api)
    confirmed_after_the_no(
        app,
        PERSON,
        "subscription_request:{id}",
        request_for="events",
        request_of="someone.else@kund.se",
    )
    assert outcome(single(admin_api, contact_id, "events"))[:2] == (False, "unsubscribed")


def test_the_persons_confirmation_through_the_link_reopens(app, admin_api) -> None:
    """The one way back: the person's own confirmation of a request for the topic."""
    contact_id = unsubscribed_from_events(app, admin_api)
    with app.app_context():
        signup = Signup(email=EMAIL, topics=("events",))
        request = request_subscription(signup, LINK_EVIDENCE, datetime.now(UTC)).request
        assert request is not None
        confirm_subscription(request.id, LINK_EVIDENCE, datetime.now(UTC))
        db.session.commit()
        assert db.session.get(SubscriptionRequest, request.id).is_confirmed
        db.session.remove()
    assert outcome(single(admin_api, contact_id, "events")) == (True, "consent", "consent")


def test_the_persons_confirmation_folded_again_after_the_request_is_confirmed_still_reopens(
    app, admin_api
) -> None:
    """The fold reads only what never changes: the projection rebuilt from the
    ledger, after the request was confirmed, reopens the topic as the first
    fold did (X7: the projection is the ledger folded)."""
    from consent.models import ConsentEvent, PermissionState
    from consent.projection import States, fold

    contact_id = unsubscribed_from_events(app, admin_api)
    with app.app_context():
        signup = Signup(email=EMAIL, topics=("events",))
        request = request_subscription(signup, LINK_EVIDENCE, datetime.now(UTC)).request
        assert request is not None
        confirm_subscription(request.id, LINK_EVIDENCE, datetime.now(UTC))
        db.session.commit()
        db.session.remove()

    with app.app_context():
        contact = db.session.get(Contact, contact_id)
        assert contact is not None
        db.session.execute(
            sa.delete(PermissionState).where(PermissionState.contact_id == contact_id)
        )
        states = States()
        for event in db.session.scalars(
            sa.select(ConsentEvent)
            .where(ConsentEvent.contact_id == contact_id)
            .order_by(ConsentEvent.id)
        ):
            fold(contact, event, states)
        db.session.commit()
        db.session.remove()

    assert outcome(single(admin_api, contact_id, "events")) == (True, "consent", "consent")
