"""Request ids, the request log line and ``/metrics`` (docs/operations.md:
Logs, Metrics). The mail jobs' side is in tests/mailing/test_observability.py,
real processes (gunicorn, dramatiq, Redis) in tests/mailing/test_observed_processes.py."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from app import create_app
from extensions import db
from kernel.logs import WITHHELD_DETAIL, JsonFormatter, TextFormatter, withhold_row_values
from tests.conftest import TEST_CONFIG, imported


def scrape(client: Any, **headers: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """/metrics as {(sample name, sorted labels): value}."""
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.get_data(as_text=True))
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


# Request ids -----------------------------------------------------------------------------


def test_a_valid_request_id_is_echoed(client) -> None:
    response = client.get("/healthz", headers={"X-Request-ID": "lb-7f3a:9e2b/1"})
    assert response.headers["X-Request-ID"] == "lb-7f3a:9e2b/1"


@pytest.mark.parametrize(
    "given",
    ["", "two words", 'quote"d', "x" * 129, "<script>", "\u00e5ngstr\u00f6m"],
    ids=["empty", "space", "quote", "too-long", "angle", "non-ascii"],
)
def test_an_unusable_request_id_is_replaced_by_a_new_one(client, given) -> None:
    response = client.get("/healthz", headers={"X-Request-ID": given})
    answered = response.headers["X-Request-ID"]
    assert answered != given and len(answered) == 32 and answered.isalnum()


def test_every_request_gets_an_id_even_when_it_is_refused(client) -> None:
    # kernel.inputs refuses a control character before any route runs.
    response = client.get("/healthz?x=%01")
    assert response.status_code == 422
    assert len(response.headers["X-Request-ID"]) == 32


# The request line -------------------------------------------------------------------------


def _request_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "event", None) == "request"]


def test_one_line_per_request_names_the_route_template_never_the_path(client, caplog) -> None:
    caplog.set_level(logging.INFO, logger="consent.requests")
    token = "secret-token-for-sara.at.example.se"
    client.get(f"/confirm/{token}", headers={"X-Request-ID": "req-42"})
    [line] = _request_lines(caplog)
    assert (line.method, line.route, line.request_id) == ("GET", "/confirm/<token>", "req-42")
    assert line.status >= 200 and line.duration_ms >= 0
    written = JsonFormatter().format(line)
    assert token not in written and "sara" not in written


def test_the_json_line_holds_the_fields_the_docs_list(client, caplog) -> None:
    caplog.set_level(logging.INFO, logger="consent.requests")
    client.get("/subscribe", headers={"X-Request-ID": "req-43"})
    [line] = _request_lines(caplog)
    fields = json.loads(JsonFormatter().format(line))
    assert fields["event"] == "request"
    assert fields["route"] == "/subscribe" and fields["status"] == 200
    assert fields["request_id"] == "req-43" and fields["level"] == "info"
    assert {"ts", "logger", "message", "method", "duration_ms"} <= fields.keys()
    assert datetime.fromisoformat(fields["ts"]).tzinfo is not None


def test_a_path_that_matches_no_route_is_one_label(client, caplog) -> None:
    caplog.set_level(logging.INFO, logger="consent.requests")
    client.get("/wp-admin/sara@example.se")
    [line] = _request_lines(caplog)
    assert (line.route, line.status) == ("unmatched", 404)


def test_log_lines_written_during_a_request_carry_its_id(client, caplog) -> None:
    # An error answered inside the request: its log line belongs to the request too.
    caplog.set_level(logging.INFO)
    client.get("/healthz", headers={"X-Request-ID": "req-44"})
    formatter = JsonFormatter()
    assert all(
        json.loads(formatter.format(r)).get("request_id") == "req-44"
        for r in caplog.records
        if r.name.startswith("consent")
    )


def test_an_unexpected_database_error_is_logged_without_the_values_sent(
    app, admin_api, caplog
) -> None:
    # The batch check's read carries its addresses as bound values; the driver
    # refuses that very statement (not an outage: the generic 500 handler logs it
    # with its traceback, which names the statement and, unless the engine hides
    # them, its values).
    import sqlalchemy as sa

    address = "sara.hidden@kund.se"

    def refuse(conn, cursor, statement, parameters, context, executemany):
        if address not in repr(parameters):
            return statement, parameters
        if conn.dialect.name == "sqlite":  # one value too many: sqlite3.ProgrammingError
            return statement, (*parameters, "one too many")
        return "NOT SQL " + statement, parameters  # a syntax error: psycopg's ProgrammingError

    caplog.set_level(logging.ERROR, logger="app")
    with app.app_context():
        sa.event.listen(db.engine, "before_cursor_execute", refuse, retval=True)
        try:
            response = admin_api.post(
                "/api/v1/permissions/check", json={"emails": [address], "topic": "events"}
            )
        finally:
            sa.event.remove(db.engine, "before_cursor_execute", refuse)
    assert response.status_code == 500
    assert response.get_json()["error"]["code"] == "internal_error"
    logged = caplog.text
    assert "ProgrammingError" in logged and "Unhandled error on POST" in logged
    assert "sara" not in logged
    assert "parameters hidden" in logged


def _logged_with(exc: BaseException) -> list[logging.LogRecord]:
    """``exc`` logged as code does: with its traceback (chained, as the 500
    handler's), with ``%s`` and ``%r``, and in an ``extra=`` field."""
    try:
        raise RuntimeError("the route failed") from exc
    except RuntimeError:
        chained = sys.exc_info()
    records = [
        logging.LogRecord("app", logging.ERROR, __file__, 1, "Unhandled %s", ("POST",), chained),
        logging.LogRecord("app", logging.ERROR, __file__, 1, "Refused: %s", (exc,), None),
        logging.LogRecord("app", logging.ERROR, __file__, 1, "Refused: %r", (exc,), None),
        logging.LogRecord("app", logging.ERROR, __file__, 1, "Refused", (), None),
    ]
    records[-1].error = str(exc)
    return records


def test_the_database_s_row_details_are_withheld_from_the_log(app) -> None:
    # PostgreSQL repeats the refused row's values in its detail, which
    # SQLAlchemy's exception text carries past hide_parameters.
    with app.app_context():
        if db.engine.dialect.name != "postgresql":
            pytest.skip(
                "only a server database repeats the row's values in its errors: needs a "
                "server database: runs on the suite's second pass"
            )
        refusals = []
        for statement, values in (
            (
                "INSERT INTO contact (email, language, created_at, updated_at) "
                "VALUES (:email, 'sv', now(), now())",
                {"email": "sara.hidden@kund.se"},
            ),
            (
                # A value with line breaks: the detail goes on over lines.
                "INSERT INTO contact (email, name, created_at, updated_at) "
                "VALUES (:email, :name, now(), now())",
                {"email": "eva.hidden@kund.se", "name": "Eva\nHidden\n\nPerson"},
            ),
        ):
            with pytest.raises(sa.exc.IntegrityError) as refused, db.engine.begin() as conn:
                conn.execute(sa.text(statement), values)
                conn.execute(sa.text(statement), values)
            refusals.append(refused.value)
    for exc in refusals:
        assert "hidden@kund.se" in str(exc)  # what the driver says, kept in the exception
        for record in _logged_with(exc):
            writings = [JsonFormatter().format(record)]
            if not hasattr(record, "error"):  # the text format leaves extra= fields out
                writings.append(TextFormatter().format(record))
            for written in writings:
                assert "hidden@kund.se" not in written and "Hidden" not in written, written
                assert "IntegrityError" in written or "Violation" in written, written
                assert "withheld from the log" in written
        exception = json.loads(JsonFormatter().format(_logged_with(exc)[0]))["exception"]
        assert "the route failed" in exception and "[SQL: INSERT INTO contact" in exception


@pytest.mark.parametrize(
    ("log_format", "formatter"), [("json", JsonFormatter), ("text", TextFormatter)]
)
def test_both_log_formats_are_the_withholding_ones(log_format: str, formatter: type) -> None:
    from flask import Flask

    from kernel.logs import configure_logging

    root = logging.getLogger()
    handler = logging.StreamHandler()
    saved = [(h, h.formatter) for h in root.handlers], root.level
    root.addHandler(handler)
    try:
        app = Flask("logs")
        app.config.update(LOG_FORMAT=log_format, LOG_LEVEL="WARNING")
        configure_logging(app)
        assert type(handler.formatter) is formatter
    finally:
        root.removeHandler(handler)
        for existing, its_formatter in saved[0]:
            existing.setFormatter(its_formatter)
        root.setLevel(saved[1])


def test_only_the_detail_lines_are_withheld() -> None:
    text = (
        'duplicate key value violates unique constraint "contact_email_key"\n'
        "DETAIL:  Key (email)=(sara@kund.se) already exists.\n"
        "[SQL: INSERT INTO contact ...]"
    )
    assert withhold_row_values(text) == (
        'duplicate key value violates unique constraint "contact_email_key"\n'
        f"DETAIL:  {WITHHELD_DETAIL}\n"
        "[SQL: INSERT INTO contact ...]"
    )
    assert withhold_row_values("No detail here.") == "No detail here."


@pytest.mark.parametrize(("name", "bad"), [("LOG_FORMAT", "xml"), ("LOG_LEVEL", "LOUD")])
def test_a_bad_log_setting_stops_the_start(database_url, monkeypatch, name, bad) -> None:
    monkeypatch.setenv(name, bad)
    with pytest.raises(RuntimeError, match=name):
        create_app({**TEST_CONFIG, "SQLALCHEMY_DATABASE_URI": database_url})


# /metrics ----------------------------------------------------------------------------------


def test_requests_are_counted_by_route_template_and_status(client) -> None:
    before = scrape(client)
    statuses = {client.get("/confirm/not-a-token").status_code for _ in range(3)}
    client.get("/healthz")
    after = scrape(client)
    labels = {"method": "GET", "route": "/confirm/<token>"}
    # Earlier tests in the same process counted this route too, under other statuses.
    assert len(statuses) == 1
    status = str(statuses.pop())
    name = "consent_http_requests_total"
    assert (
        value(after, name, **labels, status=status) - value(before, name, **labels, status=status)
        == 3
    )
    hist = "consent_http_request_duration_seconds_count"
    assert value(after, hist, **labels) - value(before, hist, **labels) == 3


def test_metrics_ask_for_the_token_when_one_is_set(app, client, monkeypatch) -> None:
    monkeypatch.setitem(app.config, "METRICS_TOKEN", "s3cret-metrics-token")
    assert client.get("/metrics").status_code == 401
    wrong = client.get("/metrics", headers={"Authorization": "Bearer s3cret-metrics-tokeX"})
    assert wrong.status_code == 401 and wrong.headers["WWW-Authenticate"] == "Bearer"
    assert "consent_http_requests_total" not in wrong.get_data(as_text=True)
    scrape(client, Authorization="Bearer s3cret-metrics-token")


def test_production_without_a_token_serves_no_metrics(app, client, monkeypatch) -> None:
    monkeypatch.setitem(app.config, "CONSENT_ENV", "production")
    monkeypatch.setitem(app.config, "METRICS_TOKEN", None)
    response = client.get("/metrics")
    assert response.status_code == 403 and "METRICS_TOKEN" in response.get_data(as_text=True)


def test_decisions_are_counted_by_reason(client, admin_api) -> None:
    before = scrape(client)
    response = admin_api.post(
        "/api/v1/permissions/check",
        json={"emails": ["nobody-1@example.se", "nobody-2@example.se"], "topic": "newsletter"},
    )
    assert response.status_code == 200
    after = scrape(client)
    name = "consent_decisions_total"
    assert (
        value(after, name, reason="unknown_contact") - value(before, name, reason="unknown_contact")
        == 2
    )


def test_the_last_retention_run_age_is_read_at_scrape_time(app, client) -> None:
    from crm.models import RetentionRun

    name = "consent_retention_last_run_age_seconds"
    assert (name, ()) not in scrape(client)  # no run yet: absent, for absent() alerts
    ended = datetime.now(UTC) - timedelta(hours=26)
    with app.app_context():
        db.session.add_all(
            [
                RetentionRun(
                    as_of=ended.date(),
                    started_at=ended - timedelta(minutes=5),
                    ended_at=ended,
                    started_by="test",
                    status="completed",
                ),
                # A later run that failed does not count as a run.
                RetentionRun(
                    as_of=ended.date(),
                    started_at=ended + timedelta(hours=2),
                    ended_at=ended + timedelta(hours=2),
                    started_by="test",
                    status="failed",
                ),
            ]
        )
        db.session.commit()
        db.session.remove()
    age = scrape(client)[(name, ())]
    assert 26 * 3600 <= age < 26 * 3600 + 60


def test_bounces_are_counted_by_type_and_outcome(app, client) -> None:
    from mailing.bounces import Bounce, record_bounce

    before = scrape(client)
    with app.app_context():
        record_bounce(Bounce(email="nobody@example.se", type="hard", source="api"))
        db.session.remove()
    after = scrape(client)
    name = "consent_bounces_total"
    labels = {"type": "hard", "outcome": "ignored"}
    assert value(after, name, **labels) - value(before, name, **labels) == 1


def test_imports_and_their_rows_are_counted(client, admin_api, import_worker) -> None:
    import io

    before = scrape(client)
    csv = b"email;name;company;country\nimp-1@kund.example;A;Kund AB;SE\nnot-an-address;B;K;SE\n"
    response = admin_api.client.post(
        "/api/v1/imports",
        headers=admin_api.headers,
        data={"basis": "customer", "source": "crm", "file": (io.BytesIO(csv), "c.csv")},
    )
    assert imported(admin_api, response, import_worker)["status"] == "done"
    after = scrape(client)
    assert (
        value(after, "consent_imports_total", status="done")
        - value(before, "consent_imports_total", status="done")
        == 1
    )
    for outcome in ("created", "rejected"):
        name = "consent_import_rows_total"
        assert value(after, name, outcome=outcome) - value(before, name, outcome=outcome) == 1


def test_webhook_deliveries_are_counted_by_outcome(app, client) -> None:
    from consent.models import WebhookDelivery, WebhookEndpoint
    from consent.webhooks import deliver

    with app.app_context():
        endpoint = WebhookEndpoint(
            url="https://hooks.example/x", secret="whsec_" + "A" * 32, is_active=False
        )
        db.session.add(endpoint)
        db.session.flush()
        delivery = WebhookDelivery(endpoint_id=endpoint.id, event_type="contact.erased")
        db.session.add(delivery)
        db.session.commit()
        delivery_id = delivery.id
        db.session.remove()
    before = scrape(client)
    with app.app_context():
        assert deliver(delivery_id) == "cancelled"
        db.session.remove()
    after = scrape(client)
    name = "consent_webhook_deliveries_total"
    assert value(after, name, outcome="cancelled") - value(before, name, outcome="cancelled") == 1


def test_rate_limit_hits_are_counted(app, database_url, request) -> None:
    from extensions import limiter

    def limits_off() -> None:
        limiter.enabled = False
        limiter.reset()

    request.addfinalizer(limits_off)
    limited = create_app(
        {
            **TEST_CONFIG,
            "SQLALCHEMY_DATABASE_URI": database_url,
            "RATELIMIT_ENABLED": True,
            "STAFF_SIGN_IN_LIMIT_PER_ACCOUNT": "2 per minute",
        }
    )
    limiter.reset()
    client = limited.test_client()
    before = scrape(client)
    statuses = [
        client.post("/staff/login", data={"email": "x@example.se", "password": "wrong"}).status_code
        for _ in range(3)
    ]
    assert statuses[-1] == 429
    after = scrape(client)
    name = "consent_rate_limit_hits_total"
    # Earlier tests in the same process hit limits too: only what this one added counts.
    added = {
        dict(k[1])["endpoint"]: v - before.get(k, 0.0)
        for k, v in after.items()
        if k[0] == name and v != before.get(k, 0.0)
    }
    assert added == {"staff.login": 1.0}


def test_a_failed_job_is_logged_with_its_error_type_only(stub_worker, caplog) -> None:
    import dramatiq

    # A queue of its own: a message another test left in "default" would keep
    # the join below waiting for it.
    @dramatiq.actor(
        broker=stub_worker,
        actor_name="observability_test_fails",
        queue_name="observability_test",
        max_retries=0,
    )
    def fails() -> None:
        raise ValueError("could not reach sara@example.se")

    caplog.set_level(logging.INFO, logger="consent.jobs")
    fails.send()
    stub_worker.join(fails.queue_name, fail_fast=False, timeout=60_000)
    [line] = [r for r in caplog.records if getattr(r, "actor", None) == fails.actor_name]
    written = json.loads(JsonFormatter().format(line))
    assert (written["outcome"], written["error"], written["level"]) == (
        "failed",
        "ValueError",
        "warning",
    )
    assert "sara" not in json.dumps(written)
