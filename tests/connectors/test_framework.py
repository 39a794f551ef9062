"""The connectors' framework around any CRM: the worker job, the scheduler's
turn, the staff page, the metrics, the retry rules, and the stand-in's answers
checked against the HubSpot client library's own models."""

from __future__ import annotations

import json
from typing import Any

import pytest
import sqlalchemy as sa

from app import create_app
from connectors import base, sync
from connectors.base import Fault, RetryPolicy
from connectors.hubspot import HubSpot
from connectors.models import ConnectorDeletion, ConnectorState
from extensions import db
from kernel.timestamps import utcnow
from tests.conftest import TEST_CONFIG
from tests.connectors.hubspot_standin import TOKEN, HubSpotStandIn
from tests.staff.helpers import client_as
from tests.test_observability import scrape, value


def test_the_worker_job_syncs_every_enabled_connector(app, hubspot, stub_worker) -> None:
    from kernel.jobs import send_job

    hubspot.add("contacts", {"email": "jobb@kund.se"})
    with app.app_context():
        send_job("sync_connectors")
    stub_worker.join("connectors")
    with app.app_context():
        state = db.session.get(ConnectorState, "hubspot")
        assert state is not None and state.items_in == 1 and state.last_success_at is not None


def test_the_scheduler_sends_the_sync_only_when_a_connector_is_enabled(database_url) -> None:
    from kernel.scheduling import periodic_jobs

    def jobs(enabled: str | None) -> list[str]:
        config = {**TEST_CONFIG, "SQLALCHEMY_DATABASE_URI": database_url}
        if enabled:
            config["CONNECTORS_ENABLED"] = [enabled]
        return [j.name for j in periodic_jobs(create_app(config))]

    assert "connectors" not in jobs(None)
    assert "connectors" in jobs("hubspot")


def test_a_run_while_another_holds_the_connector_does_nothing(app, hubspot) -> None:
    hubspot.add("contacts", {"email": "samtidig@kund.se"})
    with app.app_context():
        sync._state("hubspot")
        assert sync._take("hubspot")
        assert sync.sync("hubspot").outcome == "busy"
    assert hubspot.requests == []


def test_the_staff_page_shows_state_skips_and_deletions_owed_and_resumes(app, hubspot) -> None:
    with app.app_context():
        db.session.add(
            ConnectorState(
                name="hubspot",
                cursors={},
                items_in=7,
                items_out=3,
                errors=1,
                report=[
                    {
                        "at": "2026-12-06T10:00:00",
                        "object": "contacts",
                        "id": "77",
                        "reason": "Unknown country",
                    }
                ],
                stopped_because="The CRM refused the credentials (HTTP 401).",
            )
        )
        db.session.add(
            ConnectorDeletion(
                connector="hubspot",
                object_type="calls",
                remote_id="991",
                reason="activities.purged",
                created_at=utcnow(),
                attempts=2,
                last_error="HTTP 503: internal error",
            )
        )
        db.session.commit()
    admin = client_as(app, "admin")
    page = admin.get("/staff/connectors").get_data(as_text=True)
    for text in ("HTTP 401", "Unknown country", "991", "activities.purged", "HTTP 503"):
        assert text in page
    assert client_as(app, "marketing").get("/staff/connectors").status_code == 403
    answer = admin.post("/staff/connectors/hubspot/resume", data={})
    assert answer.status_code == 303
    with app.app_context():
        assert db.session.get(ConnectorState, "hubspot").stopped_because is None


def test_metrics_count_items_and_read_the_state(app, client, hubspot) -> None:
    hubspot.add("contacts", {"email": "mätt@kund.se"})
    before = scrape(client)
    with app.app_context():
        sync.sync("hubspot", policy=RetryPolicy(sleep=lambda s: None))
    after = scrape(client)
    name = "consent_connector_items_total"
    assert (
        value(after, name, connector="hubspot", direction="in")
        - value(before, name, connector="hubspot", direction="in")
        == 1
    )
    assert 0 <= value(after, "consent_connector_last_success_age_seconds") < 60
    assert value(after, "consent_connector_stopped") == 0
    assert value(after, "consent_connector_deletions_owed") == 0


class _Flaky:
    name = "flaky"

    def __init__(self, faults: list[Fault]) -> None:
        self.faults = faults

    def classify(self, exc: Exception) -> Fault | None:
        return exc.args[0] if exc.args and isinstance(exc.args[0], Fault) else None

    def answer(self) -> str:
        if self.faults:
            raise RuntimeError(self.faults.pop(0))
        return "ok"


def test_a_wait_longer_than_allowed_ends_the_turn_instead_of_sleeping() -> None:
    waits: list[float] = []
    flaky = _Flaky([Fault(base.RETRY, 429, "daily limit", wait_s=86_400)])
    with pytest.raises(base.CrmUnavailable, match="HTTP 429"):
        base.call(flaky, RetryPolicy(max_wait_s=60, sleep=waits.append), flaky.answer)  # type: ignore[arg-type]
    assert waits == []


def test_retries_stop_after_the_tries_and_revoked_is_never_retried() -> None:
    waits: list[float] = []
    flaky = _Flaky([Fault(base.RETRY, 503, "down")] * 3)
    with pytest.raises(base.CrmUnavailable):
        base.call(flaky, RetryPolicy(tries=3, backoff_s=1, sleep=waits.append), flaky.answer)  # type: ignore[arg-type]
    assert waits == [1, 2]
    flaky = _Flaky([Fault(base.REVOKED, 401, "revoked"), Fault(base.RETRY, 503, "x")])
    with pytest.raises(base.CrmRevoked):
        base.call(flaky, RetryPolicy(sleep=waits.append), flaky.answer)  # type: ignore[arg-type]
    assert waits == [1, 2]


# The stand-in's answers, read with the client library's own models ---------------------


@pytest.fixture
def hubspot_client(hubspot: HubSpotStandIn, app: Any) -> HubSpot:
    return HubSpot(TOKEN, app.config["HUBSPOT_BASE_URL"], {}, ["calls"])


@pytest.mark.parametrize("status", [401, 404, 429, 500])
def test_error_bodies_have_hubspots_shape(hubspot, hubspot_client, status) -> None:
    from hubspot.crm.contacts import ApiClient, ApiException
    from hubspot.crm.contacts.models import Error

    if status == 404:
        call = lambda: hubspot_client.client.crm.contacts.basic_api.archive("404404")  # noqa: E731
    else:
        hubspot.fail(status)
        call = lambda: hubspot_client.contacts(None)  # noqa: E731
    with pytest.raises(ApiException) as raised:
        call()
    assert raised.value.status == status
    body = json.loads(raised.value.body)
    if status == 429:
        # HubSpot's rate-limit answer: errorType and policyName, and its headers.
        assert body["errorType"] == "RATE_LIMIT" and body["policyName"] == "SECONDLY"
        assert raised.value.headers["X-HubSpot-RateLimit-Secondly-Remaining"] == "0"
        assert hubspot_client.classify(raised.value) == Fault(
            base.RETRY, 429, "You have reached your secondly limit.", 1.0
        )
        return
    error = ApiClient().deserialize(_Response(raised.value.body), "Error")
    assert isinstance(error, Error) and error.category and error.correlation_id


class _Response:
    def __init__(self, data: str) -> None:
        self.data = data


def test_paging_follows_after_to_the_end(hubspot, hubspot_client) -> None:
    hubspot.page_size_cap = 2
    made = [hubspot.add("contacts", {"email": f"p{i}@kund.se"}) for i in range(5)]
    seen, after, pages = [], None, 0
    while True:
        page = hubspot_client.contacts(after)
        pages += 1
        seen += [r.remote_id for r in page.records]
        if page.after is None:
            break
        after = page.after
    assert seen == made and pages == 3


def test_the_retention_preview_names_the_enabled_connectors(app, hubspot, admin_api) -> None:
    preview = admin_api.get("/api/v1/retention/preview?as_of=2026-01-01").json
    assert "connector hubspot" in preview["receivers"]


def test_the_next_full_read_waits_for_the_pass_interval_while_decisions_still_go_out(
    app, hubspot
) -> None:
    from consent import services as consent
    from crm import external_ids
    from kernel.access import CLI_ACTOR

    remote = hubspot.add("contacts", {"email": "timme@kund.se"})
    hourly = RetryPolicy(sleep=lambda s: None, pass_interval_s=3600)
    with app.app_context():
        assert sync.sync("hubspot", policy=hourly).items_in == 1
        consent.record_objection(CLI_ACTOR, external_ids.find_contact("hubspot", remote))
    reads = hubspot.reads_of("/crm/v3/objects/contacts")
    with app.app_context():
        again = sync.sync("hubspot", policy=hourly)
    assert again.outcome == "done" and again.items_out == 1
    assert hubspot.reads_of("/crm/v3/objects/contacts") == reads
    assert hubspot.objects["contacts"][remote]["properties"]["consent_may_market"] == "false"


class _Reading:
    """A connector without a CRM: its one read notes how the database commits
    meanwhile (and whether it may read changes: it may not)."""

    name = "hubspot"

    def __init__(self) -> None:
        self.seen: list[tuple[str | None, Any]] = []

    def contacts(self, after: str | None) -> base.RemotePage:
        self.seen.append((after, db.session.scalar(sa.text("SHOW synchronous_commit"))))
        return base.RemotePage([], None)

    def activity_types(self) -> list[str]:
        return []

    def classify(self, exc: Exception) -> Fault | None:
        return None


def test_a_syncs_commits_do_not_wait_for_the_disk_and_others_do(app) -> None:
    with app.app_context():
        if db.engine.dialect.name != "postgresql":
            pytest.skip(
                "synchronous_commit needs a server database: runs on the suite's second pass"
            )
        reading = _Reading()
        assert sync.sync("hubspot", reading, RetryPolicy()).outcome == "done"  # type: ignore[arg-type]
        # Called as contacts(after): a connector that cannot read changes.
        assert reading.seen == [(None, "off")]
        assert db.session.scalar(sa.text("SHOW synchronous_commit")) == "on"


@pytest.mark.parametrize(
    ("action", "swedish"),
    [
        ("full-resync", "Kopplingen har inte körts än; dess första synkning läser allt."),
        ("resume", "Kopplingen är inte stoppad."),
    ],
)
def test_a_refused_action_reads_in_the_staff_members_language(app, action, swedish) -> None:
    # A connector that never ran has no state: nothing to read again, nothing stopped.
    admin = client_as(app, "admin")
    admin.post("/staff/language", data={"lang": "sv", "next": "/staff/connectors"})
    answer = admin.post(f"/staff/connectors/hubspot/{action}", data={}, follow_redirects=True)
    assert answer.status_code == 200
    assert swedish in answer.get_data(as_text=True)
