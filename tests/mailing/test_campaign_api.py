"""The campaign API: create, send, report; errors in the house shape."""

from __future__ import annotations

from tests.crm.test_access import CAMPAIGN
from tests.mailing.test_campaigns import _consented_contacts


def test_create_send_and_read_a_campaign(app, api_as, mail_worker, smtp) -> None:
    _consented_contacts(app, 3)
    api = api_as("marketing")
    admin = api_as("admin")
    objector = admin.get("/api/v1/contacts?email=person2@example.se").json["id"]
    admin.post(f"/api/v1/contacts/{objector}/objection", json={"received_via": "phone"})

    created = api.post("/api/v1/campaigns", json=CAMPAIGN)
    assert created.status_code == 201
    assert created.json["status"] == "draft"
    sent = api.post(f"/api/v1/campaigns/{created.json['id']}/send")
    assert sent.status_code == 202
    assert sent.json["audience"] == 2
    mail_worker.drain()

    report = api.get(f"/api/v1/campaigns/{created.json['id']}").json
    assert report["status"] == "sent"
    assert (report["audience"], report["sent"], report["blocked"], report["failed"]) == (2, 2, 0, 0)
    assert len(smtp.messages) == 2
    assert "openapi" in app.test_client().get("/api/v1/openapi.json").json
    assert (
        "/api/v1/campaigns/{campaign_id}/send"
        in (app.test_client().get("/api/v1/openapi.json").json["paths"])
    )


def test_an_unknown_topic_is_refused_with_the_house_error(app, api_as) -> None:
    response = api_as("marketing").post("/api/v1/campaigns", json={**CAMPAIGN, "topic": "nope"})
    assert response.status_code == 422
    assert set(response.json["error"]) >= {"code", "message"}


def test_an_unknown_campaign_is_404(app, api_as) -> None:
    response = api_as("admin").get("/api/v1/campaigns/999")
    assert response.status_code == 404
    assert response.json["error"]["code"] == "campaign_not_found"


def test_sales_may_not_send_campaigns(app, api_as) -> None:
    response = api_as("sales").post("/api/v1/campaigns", json=CAMPAIGN)
    assert response.status_code == 403


def test_cli_sends_a_campaign_and_reports_it(app, runner_for, mail_worker, smtp) -> None:
    from extensions import db
    from kernel.access import CLI_ACTOR
    from mailing import campaigns
    from mailing.campaigns import CampaignInput

    _consented_contacts(app, 2)
    with app.app_context():
        campaign_id = campaigns.create_campaign(CLI_ACTOR, CampaignInput(**CAMPAIGN)).id
        db.session.remove()
    sent = runner_for(app).invoke(args=["campaigns", "send", str(campaign_id)])
    assert "2 newly queued" in sent.output
    mail_worker.drain()
    reported = runner_for(app).invoke(args=["campaigns", "report", str(campaign_id)])
    assert "sent: audience 2, queued 0, sent 2, blocked 0" in reported.output
