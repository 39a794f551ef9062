"""X16 on the real public paths: an unconfirmed form post and a mailbox provider's
one-click POST do not move the retention clock; the person's confirmation does."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from crm.models import Contact
from extensions import db
from tests.conftest import known_since
from tests.mailing.conftest import link
from tests.mailing.helpers import contact_id_of, eleven_minutes_pass, signup

LONG_AGO = datetime(2019, 3, 15, 16, 0, tzinfo=UTC)


def _last_interaction(app: Any, address: str) -> datetime | None:
    with app.app_context():
        value = db.session.scalar(
            sa.select(Contact.last_interaction_at).where(Contact.email == address)
        )
        db.session.remove()
        return value


def _set_last_interaction(app: Any, address: str, moment: datetime) -> None:
    with app.app_context():
        db.session.execute(
            sa.update(Contact).where(Contact.email == address).values(last_interaction_at=moment)
        )
        db.session.commit()
        db.session.remove()


def test_an_unconfirmed_form_post_does_not_move_the_clock_but_the_confirmation_does(
    app, client, smtp, mail_worker
) -> None:
    signup(client, "kund@foretag.se")
    contact_id = contact_id_of(app, "kund@foretag.se")
    known_since(app, contact_id, "2018-01-01T00:00:00")
    _set_last_interaction(app, "kund@foretag.se", LONG_AGO)
    mail_worker.drain()
    eleven_minutes_pass(app)
    # Anyone can post the form with this address: it proves nothing about the person.
    signup(client, "kund@foretag.se", topics="newsletter,events")
    assert _last_interaction(app, "kund@foretag.se") == LONG_AGO
    # The person followed the link the service sent: that is their interaction.
    mail_worker.drain()
    client.post(link(smtp.wait_for(1)[0], "/confirm/"))
    moved = _last_interaction(app, "kund@foretag.se")
    assert moved is not None and moved > LONG_AGO


def test_a_one_click_post_by_the_mailbox_provider_does_not_move_the_clock(
    app, client, smtp, mail_worker
) -> None:
    signup(client, "sara@example.se", topics="newsletter,events")
    mail_worker.drain()
    client.post(link(smtp.wait_for(1)[0], "/confirm/"))
    mail_worker.drain()
    welcome = smtp.wait_for(2)[1]
    _set_last_interaction(app, "sara@example.se", LONG_AGO)
    url = str(welcome["List-Unsubscribe"]).split(",")[0].strip().strip("<>")
    fresh = app.test_client(use_cookies=False)
    response = fresh.post(
        url.removeprefix("http://localhost"),
        data={"List-Unsubscribe": "One-Click"},
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 200
    assert _last_interaction(app, "sara@example.se") == LONG_AGO
