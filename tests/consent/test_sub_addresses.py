"""A suppressed mailbox blocks its sub-addresses on every way in (R22, X5).

Mail to ``gone+anything@kund.se`` lands in ``gone@kund.se``. When
``gone@kund.se`` objected and was erased, only the keyed hash of that address
is left; an address with a new ``+tag`` hashes to something else, so every
check hashes the address's mailbox too (``kernel.addresses.keyed_hashes``).
"""

from __future__ import annotations

import io
from typing import Any

import pytest
import sqlalchemy as sa

from tests.conftest import finish_imports
from tests.mailing.helpers import contact_id_of, decision, events, signup


@pytest.fixture(autouse=True)
def _import_worker(import_worker: Any) -> None:
    """The API and the staff page hand their imports to a worker."""


CUSTOMER = {"type": "legitimate_interest", "kind": "customer", "source": "crm-sync"}


def _create(api: Any, email: str, **extra: Any) -> Any:
    body = {"email": email, "name": "Anna", "country": "SE", "language": "sv", **extra}
    return api.post("/api/v1/contacts", json=body)


def _erase_an_objector(api: Any, email: str) -> None:
    """What R22 leaves of a person who objected and was erased: their address's hash."""
    contact_id = _create(api, email, basis=CUSTOMER).json["id"]
    api.post(f"/api/v1/contacts/{contact_id}/objection", json={"received_via": "letter"})
    assert api.delete(f"/api/v1/contacts/{contact_id}").json["suppression_kept"] is True


def _import(api: Any, content: str, basis: str) -> dict[str, Any]:
    response = api.client.post(
        "/api/v1/imports",
        headers=api.headers,
        data={"basis": basis, "source": "fair", "file": (io.BytesIO(content.encode()), "l.csv")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 202, response.json
    finish_imports()
    return api.get(response.headers["Location"]).json  # type: ignore[no-any-return]


def _audience(app: Any, topic: str = "events") -> set[int]:
    from consent.audience import audience_query
    from consent.topics import current_policy
    from extensions import db
    from kernel.timestamps import utcnow

    with app.app_context():
        policy = current_policy()
        found = set(
            db.session.scalars(audience_query(policy.topic(topic), "email", utcnow(), policy))
        )
        db.session.remove()
        return found


def test_a_suppressed_mailbox_blocks_its_sub_addresses_on_every_way_in(
    app, admin_api, client
) -> None:
    _erase_an_objector(admin_api, "gone@kund.se")
    control = _create(admin_api, "other+news@kund.se", basis=CUSTOMER).json["id"]

    # A CRM sync, as a customer.
    synced = _create(admin_api, "Gone+CRM@Kund.se", basis=CUSTOMER)
    assert synced.status_code == 201
    synced_id = synced.json["id"]
    assert events(admin_api, synced_id)[0]["kind"] == "created_while_suppressed"
    for found in admin_api.get(f"/api/v1/contacts/{synced_id}/permissions").json["decisions"]:
        assert (found["allowed"], found["reason"]) == (False, "suppressed")
    batch = admin_api.post(
        "/api/v1/permissions/check",
        json={"emails": ["gone+crm@kund.se", "other+news@kund.se"], "topic": "events"},
    ).json["decisions"]
    assert [d["reason"] for d in batch] == ["suppressed", "customer"]

    # Imports: skipped from an industry list, stored but never allowed as a customer.
    listed = _import(admin_api, "email,country\ngone+list@kund.se,SE\n", "industry_list")
    assert (listed["created"], listed["skipped_suppressed"]) == (0, 1)
    assert contact_id_of(app, "gone+list@kund.se") is None
    customers = _import(admin_api, "email,country\ngone+kund@kund.se,SE\n", "customer")
    assert customers["created"] == 1
    imported_id = contact_id_of(app, "gone+kund@kund.se")
    assert decision(admin_api, imported_id, "events")["reason"] == "suppressed"

    # A ticked box from a country without the double opt-in rule is no consent here.
    response = signup(client, "gone+form@kund.se", topics="events", country="SE")
    assert response.status_code == 200
    form_id = contact_id_of(app, "gone+form@kund.se")
    assert decision(admin_api, form_id, "events")["reason"] == "suppressed"
    assert events(admin_api, form_id)[0]["kind"] == "created_while_suppressed"

    # The campaign audience, the set-based copy of the decision, agrees.
    assert _audience(app) == {control}
    export = admin_api.get(f"/api/v1/contacts/{synced_id}/export").json
    assert export["suppressed"] is True


def test_a_confirmation_at_a_sub_address_never_lifts_the_mailboxs_no(
    app, admin_api, client
) -> None:
    """Only the person lifts their own "no" (X6), and they said it at gone@: a
    confirmation through gone+news@ lifts no entry and opens nothing."""
    from consent.models import SubscriptionRequest
    from consent.tokens import Purpose, make_token
    from extensions import db

    _erase_an_objector(admin_api, "gone@kund.se")
    signup(client, "gone+news@kund.se")
    with app.app_context():
        request_id = db.session.scalar(sa.select(SubscriptionRequest.id))
        confirm = f"/confirm/{make_token(Purpose.CONFIRM, {'r': request_id})}"
        db.session.remove()
    confirmed = client.post(confirm, headers={"Origin": "http://localhost"})
    assert confirmed.status_code == 200
    contact_id = contact_id_of(app, "gone+news@kund.se")
    assert decision(admin_api, contact_id, "newsletter")["reason"] == "suppressed"
    kinds = [e["kind"] for e in events(admin_api, contact_id)]
    assert "unsuppressed" not in kinds
    with app.app_context():
        from consent.suppression import find_suppression

        assert find_suppression("gone@kund.se") is not None


def test_a_sub_addresss_own_no_outlives_the_mailboxs(app, admin_api) -> None:
    """A person who objects at gone+news@ while gone@ is listed gets an entry of
    their own, which is kept at erasure; a suppressed sub-address blocks only itself."""
    _erase_an_objector(admin_api, "gone@kund.se")
    contact_id = _create(admin_api, "gone+news@kund.se", basis=CUSTOMER).json["id"]
    admin_api.post(f"/api/v1/contacts/{contact_id}/objection", json={"received_via": "phone"})
    with app.app_context():
        from consent.models import Suppression
        from consent.suppression import own_suppression
        from extensions import db

        assert own_suppression("gone+news@kund.se") is not None
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Suppression)) == 2
        db.session.remove()
    assert admin_api.delete(f"/api/v1/contacts/{contact_id}").json["suppression_kept"] is True

    listed_only = _create(admin_api, "solo+x@kund.se", basis=CUSTOMER).json["id"]
    admin_api.post(f"/api/v1/contacts/{listed_only}/objection", json={"received_via": "phone"})
    base = _create(admin_api, "solo@kund.se", basis=CUSTOMER).json["id"]
    assert decision(admin_api, base, "events")["reason"] == "customer"


def test_the_mailbox_of_an_address_is_the_address_without_its_tag() -> None:
    from kernel.addresses import domain_of, mailbox_of

    assert mailbox_of("anna+news@firma.se") == "anna@firma.se"
    assert mailbox_of("anna+a+b@firma.se") == "anna@firma.se"
    assert mailbox_of("anna@firma.se") == "anna@firma.se"
    # Nothing before the tag, or a quoted local part: its own mailbox.
    assert mailbox_of("+news@firma.se") == "+news@firma.se"
    assert mailbox_of('"anna+x"@firma.se') == '"anna+x"@firma.se'
    assert domain_of("anna+news@företag.se") == "företag.se"
