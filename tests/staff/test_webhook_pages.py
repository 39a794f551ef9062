"""The admin's webhook pages: the receivers, each one's delivery log (attempts,
status, last error, next try) and the replay actions, CSRF-checked."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from consent import webhooks
from consent.models import WebhookDelivery
from extensions import db
from kernel.access import CLI_ACTOR
from tests.staff.helpers import client_as, make_contact


def text(response: Any) -> str:
    return response.get_data(as_text=True)


def receiver_with_deliveries(app: Any) -> tuple[int, list[int]]:
    """A receiver (never posted to here: no worker runs) owed the deliveries of a new contact."""
    with app.app_context():
        endpoint, _secret = webhooks.create_endpoint(
            CLI_ACTOR, "https://93.184.215.14/hooks", "The CRM"
        )
        endpoint_id = endpoint.id
        db.session.remove()
    make_contact(app)
    with app.app_context():
        ids = list(db.session.scalars(sa.select(WebhookDelivery.id).order_by(WebhookDelivery.id)))
        db.session.remove()
    return endpoint_id, ids


def test_the_admin_reads_a_receivers_log_and_replays_with_the_csrf_token(app, monkeypatch) -> None:
    monkeypatch.setitem(app.config, "WTF_CSRF_ENABLED", True)
    endpoint_id, ids = receiver_with_deliveries(app)
    assert ids
    with app.app_context():
        first = db.session.get(WebhookDelivery, ids[0])
        first.attempts, first.last_error = 3, "HTTP 503"
        first.next_attempt_at = first.created_at
        db.session.commit()
        db.session.remove()
    admin = client_as(app, "admin")

    listing = text(admin.get("/staff/admin/webhooks"))
    assert "https://93.184.215.14/hooks" in listing and "All event types" in listing
    page = text(admin.get(f"/staff/admin/webhooks/{endpoint_id}"))
    for delivery_id in ids:
        assert f'id="delivery-{delivery_id}"' in page
    assert "HTTP 503" in page and "contact.created" in page

    refused = admin.post(f"/staff/admin/webhooks/{endpoint_id}/deliveries/{ids[0]}/replay")
    assert refused.status_code == 400
    token = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    replayed = admin.post(
        f"/staff/admin/webhooks/{endpoint_id}/deliveries/{ids[0]}/replay",
        data={"csrf_token": token},
    )
    assert replayed.status_code == 303
    assert "will be posted again" in text(admin.get(replayed.location))
    since = admin.post(
        f"/staff/admin/webhooks/{endpoint_id}/replay",
        data={"csrf_token": token, "after_change": "chg_0"},
    )
    assert since.status_code == 303
    with app.app_context():
        replays = db.session.scalars(
            sa.select(WebhookDelivery.replay_of)
            .where(WebhookDelivery.id > ids[-1])
            .order_by(WebhookDelivery.id)
        ).all()
        db.session.remove()
    assert replays[0] == ids[0] and len(replays) == 1 + len(ids)

    filtered = text(admin.get(f"/staff/admin/webhooks/{endpoint_id}?status=delivered"))
    assert "No deliveries." in filtered


def test_a_bad_replay_form_changes_nothing_and_says_why(app) -> None:
    endpoint_id, ids = receiver_with_deliveries(app)
    admin = client_as(app, "admin")
    for form, why in (
        ({}, "Give either a change id or a time."),
        ({"after_change": "chg_1", "since": "2026-01-01T00:00"}, "Give either a change id"),
        ({"since": "igår"}, "Not a date and time."),
        ({"after_change": "chg_x"}, "Not a change id"),
    ):
        response = admin.post(f"/staff/admin/webhooks/{endpoint_id}/replay", data=form)
        assert response.status_code == 303
        assert why in text(admin.get(response.location))
    assert admin.get(f"/staff/admin/webhooks/{endpoint_id}?status=lost").status_code == 422
    assert admin.get("/staff/admin/webhooks/999").status_code == 404
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(WebhookDelivery)) == len(
            ids
        )
