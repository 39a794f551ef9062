"""What each provider's event means here: the tables of docs/bounces.md, one row each.

The payloads are the stand-ins' (tests/mailing/provider_standins.py), built
from each provider's published reference; no database is needed.
"""

from __future__ import annotations

import json

import pytest

from mailing.provider_bounces import postmark_bounces, sendgrid_bounce, ses_bounces
from tests.mailing.provider_standins import (
    postmark_bounce,
    sendgrid_event,
    ses_bounce,
    ses_complaint,
)

ANNA = "anna.kund@kund.example"


@pytest.mark.parametrize(
    ("bounce_type", "expected"),
    [("Permanent", "hard"), ("Transient", "soft"), ("Undetermined", "soft")],
)
def test_ses_bounce_types(bounce_type: str, expected: str) -> None:
    [bounce] = ses_bounces(ses_bounce(ANNA, bounce_type=bounce_type, message_id="<m@x>"))
    assert (bounce.email, bounce.type, bounce.source) == (ANNA, expected, "ses")
    assert (bounce.status, bounce.message_id) == ("5.1.1", "<m@x>")
    assert bounce.diagnostic == "smtp; 550 5.1.1 user unknown"
    assert bounce.occurred_at is not None and bounce.occurred_at.tzinfo is not None


def test_ses_event_publishing_and_complaints() -> None:
    published = json.loads(ses_bounce(ANNA))
    published["eventType"] = published.pop("notificationType")
    assert [b.type for b in ses_bounces(json.dumps(published))] == ["hard"]
    assert [b.type for b in ses_bounces(ses_complaint(ANNA))] == ["complaint"]
    assert list(ses_bounces(ses_complaint(ANNA, feedback="not-spam"))) == []
    delivery = json.dumps({"notificationType": "Delivery", "delivery": {"recipients": [ANNA]}})
    assert list(ses_bounces(delivery)) == []
    assert list(ses_bounces("not json")) == []


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("HardBounce", "hard"),
        ("BadEmailAddress", "hard"),
        ("SoftBounce", "soft"),
        ("Transient", "soft"),
        ("DnsError", "soft"),
        ("Blocked", "soft"),
        ("SpamComplaint", "complaint"),
        ("AutoResponder", None),
        ("Unsubscribe", None),
        ("ManuallyDeactivated", None),
        ("Unknown", None),
    ],
)
def test_postmark_types(kind: str, expected: str | None) -> None:
    found = list(postmark_bounces(json.dumps(postmark_bounce(ANNA, kind)).encode()))
    assert [b.type for b in found] == ([expected] if expected else [])
    if found:
        assert found[0].source == "postmark" and found[0].email == ANNA
        # Postmark's MessageID is its own, never taken for ours.
        assert found[0].message_id is None


@pytest.mark.parametrize(
    ("event", "fields", "expected"),
    [
        ("bounce", {}, "hard"),
        ("bounce", {"type": "blocked", "status": "5.7.1"}, "soft"),
        ("bounce", {"status": "4.2.2"}, "soft"),
        ("dropped", {"reason": "Bounced Address"}, "hard"),
        ("dropped", {"reason": "Invalid"}, "hard"),
        ("dropped", {"reason": "Spam Reporting Address"}, "complaint"),
        ("dropped", {"reason": "Unsubscribed Address"}, None),
        ("spamreport", {}, "complaint"),
        ("deferred", {"status": "4.2.2"}, None),
        ("delivered", {}, None),
        ("open", {}, None),
        ("unsubscribe", {}, None),
    ],
)
def test_sendgrid_events(event: str, fields: dict[str, str], expected: str | None) -> None:
    found = sendgrid_bounce(sendgrid_event(ANNA, event, **{"smtp-id": "<m@x>", **fields}))
    assert (found.type if found else None) == expected
    if found:
        assert (found.source, found.message_id, found.email) == ("sendgrid", "<m@x>", ANNA)


def test_wrongly_typed_fields_are_dropped_never_raised() -> None:
    event = sendgrid_event(ANNA, "bounce", status=["5.1.1"], reason={"x": 1}, timestamp="soon")
    found = sendgrid_bounce(event)
    assert found is not None
    assert (found.status, found.diagnostic, found.occurred_at) == (None, None, None)
    assert sendgrid_bounce({"event": "bounce", "email": 42}) is None
    assert list(postmark_bounces(b"[1, 2]")) == []
