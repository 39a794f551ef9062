"""Segments: saved contact filters that narrow a campaign's audience, never widen
it; the preview's counts per reason; what deleting a segment does."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from extensions import db


def _contacts(app: Any, people: list[tuple[str, str, bool]]) -> dict[str, int]:
    """Contacts (address, country, consented to the newsletter by email or not)."""
    from consent.ledger import record
    from consent.models import Basis, EventKind
    from crm.models import Contact
    from kernel.access import Actor

    ids = {}
    with app.app_context():
        for address, country, consented in people:
            contact = Contact(email=address, country=country, language="en")
            db.session.add(contact)
            db.session.flush()
            if consented:
                record(
                    contact,
                    EventKind.CONFIRMED,
                    actor=Actor(kind="person", name="form"),
                    source="double_opt_in",
                    topic="newsletter",
                    channel="email",
                    basis=Basis.CONSENT.value,
                )
            ids[address] = contact.id
        db.session.commit()
        db.session.remove()
    return ids


def _object(app: Any, contact_id: int) -> None:
    from consent import services
    from kernel.access import CLI_ACTOR

    with app.app_context():
        services.record_objection(CLI_ACTOR, contact_id, received_via="phone")
        db.session.remove()


def _segment(app: Any, name: str, **args: str) -> int:
    from kernel.access import CLI_ACTOR
    from mailing import segments

    with app.app_context():
        segment_id = segments.create_segment(CLI_ACTOR, segments.SegmentInput(name, args)).id
        db.session.remove()
    return segment_id


def _campaign(app: Any, segment_id: int | None) -> int:
    from kernel.access import CLI_ACTOR
    from mailing import campaigns

    texts = campaigns.CampaignInput("newsletter", "Nytt", "Hej!", "News", "Hello!", segment_id)
    with app.app_context():
        campaign_id = campaigns.create_campaign(CLI_ACTOR, texts).id
        db.session.remove()
    return campaign_id


def _send(app: Any, campaign_id: int) -> set[int]:
    """Send the campaign; the contacts it queued a message for."""
    from kernel.access import CLI_ACTOR
    from mailing import campaigns
    from mailing.models import OutboxMessage

    with app.app_context():
        campaigns.send_campaign(CLI_ACTOR, campaign_id)
        queued = set(
            db.session.scalars(
                sa.select(OutboxMessage.contact_id).where(OutboxMessage.campaign_id == campaign_id)
            )
        )
        db.session.remove()
    return queued


PEOPLE = [
    ("allowed.se@kund.example", "SE", True),
    ("allowed.no@kund.example", "NO", True),  # allowed, outside the segment
    ("nobasis.se@kund.example", "SE", False),  # in the segment, no basis
    ("objector.se@kund.example", "SE", True),  # in the segment, objected
]


def test_the_segment_narrows_the_topics_audience_and_never_widens_it(app) -> None:
    ids = _contacts(app, PEOPLE)
    _object(app, ids["objector.se@kund.example"])
    swedes = _segment(app, "Sweden", country="SE")

    queued = _send(app, _campaign(app, swedes))

    # Only who is both allowed and in the segment: not the allowed contact in
    # Norway, not the Swedes the policy refuses.
    assert queued == {ids["allowed.se@kund.example"]}
    # Without a segment, the whole topic's audience.
    assert _send(app, _campaign(app, None)) == {
        ids["allowed.se@kund.example"],
        ids["allowed.no@kund.example"],
    }


def test_the_preview_counts_the_segments_allowed_and_the_rest_per_reason(app) -> None:
    from mailing import campaigns

    ids = _contacts(app, PEOPLE)
    _object(app, ids["objector.se@kund.example"])
    campaign_id = _campaign(app, _segment(app, "Sweden", country="SE"))
    with app.app_context():
        preview = campaigns.preview_campaign(campaign_id)
        whole = campaigns.preview_campaign(_campaign(app, None))
        db.session.remove()
    assert (preview.in_segment, preview.audience) == (3, 1)
    assert preview.not_allowed == {"no_basis": 1, "objection": 1}
    assert (whole.in_segment, whole.audience) == (None, 2)


def test_the_policy_still_checks_each_message_of_a_segment_right_before_it_leaves(
    app, smtp
) -> None:
    from mailing import delivery
    from mailing.models import OutboxMessage

    ids = _contacts(app, PEOPLE[:1])
    campaign_id = _campaign(app, _segment(app, "Sweden", country="SE"))
    assert _send(app, campaign_id) == set(ids.values())
    _object(app, ids["allowed.se@kund.example"])  # after the queuing, before the send
    with app.app_context():
        [row_id] = db.session.scalars(
            sa.select(OutboxMessage.id).where(OutboxMessage.campaign_id == campaign_id)
        )
        result = delivery.deliver(row_id)
        db.session.remove()
    assert (result.status, result.reason) == ("blocked", "objection")
    assert smtp.messages == []


def test_a_sent_campaign_keeps_its_segment_when_the_segment_is_edited_or_deleted(app) -> None:
    from kernel.access import CLI_ACTOR
    from mailing import campaigns, segments
    from mailing.models import Campaign, Segment

    ids = _contacts(app, PEOPLE[:2])
    swedes = _segment(app, "Sweden", country="SE")
    campaign_id = _campaign(app, swedes)
    assert _send(app, campaign_id) == {ids["allowed.se@kund.example"]}
    with app.app_context():
        segments.update_segment(
            CLI_ACTOR, swedes, segments.SegmentInput("Norway", {"country": "NO"})
        )
        segments.delete_segment(CLI_ACTOR, swedes)
        campaign = db.session.get(Campaign, campaign_id)
        assert db.session.get(Segment, swedes) is None
        assert (campaign.segment_id, campaign.segment_name, campaign.segment_args) == (
            None,
            "Sweden",
            {"country": "SE"},
        )
        db.session.remove()
    # A later send reaches new Swedes only: the copy narrows it, not the whole topic.
    later = _contacts(
        app, [("new.se@kund.example", "SE", True), ("new.no@kund.example", "NO", True)]
    )
    assert _send(app, campaign_id) == {ids["allowed.se@kund.example"], later["new.se@kund.example"]}
    with app.app_context():
        assert campaigns.report(campaign_id).campaign.segment_name == "Sweden"
        db.session.remove()


def test_a_segment_a_draft_targets_cannot_be_deleted(app) -> None:
    from kernel.access import CLI_ACTOR
    from kernel.errors import Conflict
    from mailing import campaigns, segments
    from mailing.models import Segment

    swedes = _segment(app, "Sweden", country="SE")
    draft = _campaign(app, swedes)
    with app.app_context():
        with pytest.raises(Conflict, match="not yet sent"):
            segments.delete_segment(CLI_ACTOR, swedes)
        db.session.rollback()
        assert db.session.get(Segment, swedes) is not None
        # Retargeted, the draft lets go of it.
        campaigns.target_campaign(CLI_ACTOR, draft, None)
        segments.delete_segment(CLI_ACTOR, swedes)
        db.session.remove()


@pytest.mark.parametrize(
    ("name", "args", "field"),
    [
        ("", {"country": "SE"}, "name"),
        ("x" * 101, {"country": "SE"}, "name"),
        ("Everyone", {}, None),
        ("Bad topic", {"topic": "no-such-topic"}, None),
        ("Bad date", {"created_from": "yesterday"}, "created_from"),
    ],
)
def test_a_segment_that_is_not_valid_is_refused_and_nothing_is_written(
    app, name: str, args: dict[str, str], field: str | None
) -> None:
    from kernel.access import CLI_ACTOR
    from kernel.errors import InvalidInput
    from mailing import segments
    from mailing.models import Segment

    with app.app_context():
        with pytest.raises(InvalidInput) as refused:
            segments.create_segment(CLI_ACTOR, segments.SegmentInput(name, args))
        db.session.rollback()
        if field:
            assert field in refused.value.fields
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Segment)) == 0
        db.session.remove()


def test_two_segments_cannot_share_a_name(app) -> None:
    from kernel.access import CLI_ACTOR
    from kernel.errors import InvalidInput
    from mailing import segments

    _segment(app, "Sweden", country="SE")
    with app.app_context(), pytest.raises(InvalidInput, match="already"):
        segments.create_segment(CLI_ACTOR, segments.SegmentInput(" sweden ", {"country": "NO"}))
