"""Bounce webhooks of Amazon SES (through SNS), Postmark and SendGrid.

SES, SNS, Postmark and SendGrid cannot run here: each is a local stand-in
built from the provider's published reference (tests/mailing/provider_standins.py
says which), signing or authenticating its posts as that reference says. SNS's
signing certificate is served by a real HTTPS server on 127.0.0.1 with a
certificate from a CA of this test run, which the app trusts through
``SNS_CA_FILE``; ``SNS_CERT_HOST_PATTERN`` names 127.0.0.1 as the one SNS host.

What an integrator checks: a correctly signed hard bounce makes the address
undeliverable and a complaint is an objection; a post that is unsigned,
signed by someone else, stale, or whose certificate comes from another host
changes nothing at all (every table's row count is the same) and is refused
with 401 or 403, logged without its body.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from mailing.provider_signatures import forget_certificates
from tests.conftest import count_rows
from tests.mailing.bounce_helpers import mailed_contacts, newsletter_reason
from tests.mailing.provider_standins import (
    TOPIC_ARN,
    HttpsServer,
    LocalCa,
    SendGridStandIn,
    SnsStandIn,
    basic_auth,
    postmark_bounce,
    sendgrid_event,
    ses_bounce,
    ses_complaint,
)

ANNA = "anna.kund@kund.example"
POSTMARK_AUTH = "postmark:a-long-webhook-password"


@pytest.fixture(scope="module")
def https(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalCa, HttpsServer]]:
    ca = LocalCa(tmp_path_factory.mktemp("ca"))
    server = HttpsServer(ca)
    yield ca, server
    server.close()


@pytest.fixture
def sns(
    app: Any, https: tuple[LocalCa, HttpsServer], monkeypatch: pytest.MonkeyPatch
) -> SnsStandIn:
    ca, server = https
    monkeypatch.setitem(app.config, "SES_SNS_TOPIC_ARNS", TOPIC_ARN)
    monkeypatch.setitem(app.config, "SNS_CERT_HOST_PATTERN", r"127\.0\.0\.1")
    monkeypatch.setitem(app.config, "SNS_CA_FILE", str(ca.ca_file))
    forget_certificates()
    return SnsStandIn(server)


@pytest.fixture
def sendgrid(app: Any, monkeypatch: pytest.MonkeyPatch) -> SendGridStandIn:
    stand_in = SendGridStandIn()
    monkeypatch.setitem(app.config, "SENDGRID_WEBHOOK_PUBLIC_KEY", stand_in.public_key)
    return stand_in


@pytest.fixture
def postmark(app: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setitem(app.config, "POSTMARK_WEBHOOK_AUTH", POSTMARK_AUTH)
    return POSTMARK_AUTH


@pytest.fixture
def anna(app: Any, _mail_folder: str, admin_api: Any) -> dict[str, Any]:
    """Anna, whom a newsletter may reach, and who was sent one."""
    ids, campaign_id, message_ids = mailed_contacts(app, [ANNA])
    assert newsletter_reason(admin_api, ids[0]) == "consent"
    return {"id": ids[0], "campaign": campaign_id, "message_id": message_ids[ANNA]}


def _unchanged(app: Any, before: dict[str, int], api: Any, contact_id: int) -> None:
    assert count_rows(app) == before
    assert newsletter_reason(api, contact_id) == "consent"


# --- Amazon SES through SNS -----------------------------------------------------------------


@pytest.mark.parametrize("version", ["1", "2"])
def test_a_signed_ses_hard_bounce_makes_the_address_undeliverable(
    app, client, admin_api, anna, sns, version
) -> None:
    envelope = sns.envelope(ses_bounce(ANNA, message_id=anna["message_id"]), version=version)

    response = sns.post(client, envelope)

    assert response.status_code == 200, response.json
    assert response.json["recorded"] == 1
    assert newsletter_reason(admin_api, anna["id"]) == "undeliverable"
    [event] = [
        e
        for e in admin_api.get(f"/api/v1/contacts/{anna['id']}/events").json
        if e["kind"] == "undeliverable"
    ]
    assert "5.1.1" in (event.get("note") or "")


def test_a_signed_ses_complaint_is_an_objection_to_email_marketing(
    client, admin_api, anna, sns
) -> None:
    response = sns.post(client, sns.envelope(ses_complaint(ANNA), subject="Amazon SES Email Event"))

    assert response.status_code == 200 and response.json["recorded"] == 1
    assert newsletter_reason(admin_api, anna["id"]) == "objection"


def test_a_not_spam_feedback_from_ses_is_no_complaint(app, client, admin_api, anna, sns) -> None:
    before = count_rows(app)
    response = sns.post(client, sns.envelope(ses_complaint(ANNA, feedback="not-spam")))
    assert response.status_code == 200 and response.json["skipped"] == 1
    _unchanged(app, before, admin_api, anna["id"])


def test_a_signed_bounce_for_an_address_we_never_mailed_changes_nothing(
    app, client, admin_api, anna, sns
) -> None:
    before = count_rows(app)
    response = sns.post(client, sns.envelope(ses_bounce("stranger@kund.example")))
    assert response.status_code == 200 and response.json["ignored"] == 1
    _unchanged(app, before, admin_api, anna["id"])


def test_control_characters_in_a_signed_payload_are_never_a_server_error(
    app, client, admin_api, anna, sns
) -> None:
    """SNS posts text/plain, which the service's JSON checks do not read: the
    payload's strings are cleaned before they reach a column (PostgreSQL
    refuses NUL in text)."""
    notification = json.loads(ses_bounce(ANNA, message_id=anna["message_id"] + "\x00"))
    recipient = notification["bounce"]["bouncedRecipients"][0]
    recipient["diagnosticCode"] = "smtp; 550\x00 5.1.1 \ud800 unknown\x1b"
    recipient["emailAddress"] = ANNA + "\x00"

    response = sns.post(client, sns.envelope(json.dumps(notification)))

    assert response.status_code == 200, response.get_data(as_text=True)
    assert newsletter_reason(admin_api, anna["id"]) == "undeliverable"


def _tampered(sns: SnsStandIn) -> dict[str, Any]:
    envelope = sns.envelope(ses_bounce("someone.else@kund.example"))
    envelope["Message"] = ses_bounce(ANNA)  # signed for another address
    return envelope


def _foreign_host(sns: SnsStandIn) -> dict[str, Any]:
    # The same certificate, at a host the pattern does not name: never fetched.
    sns.https.files["/foreign.pem"] = sns.https.files[sns.cert_path]
    return sns.envelope(ses_bounce(ANNA), cert_url=sns.https.url("/foreign.pem", host="localhost"))


def _plain_http(sns: SnsStandIn) -> dict[str, Any]:
    url = sns.cert_url.replace("https://", "http://")
    return sns.envelope(ses_bounce(ANNA), cert_url=url)


def _unsigned(sns: SnsStandIn) -> dict[str, Any]:
    envelope = sns.envelope(ses_bounce(ANNA))
    del envelope["Signature"]
    return envelope


def _someone_elses_topic(sns: SnsStandIn) -> dict[str, Any]:
    # Signed by SNS all right, but for a topic of another AWS account.
    return sns.envelope(ses_bounce(ANNA), topic_arn="arn:aws:sns:eu-north-1:999999999999:mine")


def _someone_elses_key(sns: SnsStandIn) -> dict[str, Any]:
    other = SnsStandIn(sns.https)
    envelope = other.envelope(ses_bounce(ANNA))
    envelope["SigningCertURL"] = sns.cert_url  # claims the real certificate
    return envelope


FORGED_SNS = {
    "tampered message": (_tampered, 403, "signature_invalid"),
    "signed by another key": (_someone_elses_key, 403, "signature_invalid"),
    "stale": (
        lambda s: s.envelope(ses_bounce(ANNA), signed_at=datetime.now(UTC) - timedelta(hours=3)),
        403,
        "signature_stale",
    ),
    "certificate on a foreign host": (_foreign_host, 403, "certificate_url_refused"),
    "certificate over plain http": (_plain_http, 403, "certificate_url_refused"),
    "unknown signature version": (
        lambda s: s.envelope(ses_bounce(ANNA), version="3"),
        403,
        "sns_signature_version",
    ),
    "another account's topic": (_someone_elses_topic, 403, "sns_topic_refused"),
    "unsigned": (_unsigned, 401, "signature_missing"),
}


@pytest.mark.parametrize("case", sorted(FORGED_SNS))
def test_a_forged_ses_post_changes_nothing(app, client, admin_api, anna, sns, case, caplog) -> None:
    build, status, code = FORGED_SNS[case]
    envelope = build(sns)
    before = count_rows(app)
    sns.https.hits.clear()

    with caplog.at_level(logging.WARNING, logger="mailing.provider_webhooks"):
        response = sns.post(client, envelope)

    assert (response.status_code, response.json["error"]["code"]) == (status, code)
    _unchanged(app, before, admin_api, anna["id"])
    if case == "certificate on a foreign host":
        assert "/foreign.pem" not in sns.https.hits
    [record] = caplog.records
    assert "ses" in record.getMessage() and code in record.getMessage()
    assert ANNA not in record.getMessage()


def test_ses_posts_are_refused_while_no_topic_is_configured(
    app, client, admin_api, anna, sns, monkeypatch
) -> None:
    monkeypatch.setitem(app.config, "SES_SNS_TOPIC_ARNS", "")
    before = count_rows(app)
    response = sns.post(client, sns.envelope(ses_bounce(ANNA)))
    assert (response.status_code, response.json["error"]["code"]) == (
        403,
        "provider_not_configured",
    )
    _unchanged(app, before, admin_api, anna["id"])


def test_a_signed_subscription_confirmation_visits_the_subscribe_url(client, sns) -> None:
    envelope = sns.envelope("You have chosen to subscribe.", kind="SubscriptionConfirmation")
    sns.https.hits.clear()

    response = sns.post(client, envelope)

    assert response.status_code == 200 and response.json["confirmed_subscription"] is True
    assert any(hit.startswith("/?Action=ConfirmSubscription") for hit in sns.https.hits)


def test_a_subscribe_url_on_a_foreign_host_is_never_visited(client, sns) -> None:
    foreign = sns.https.url("/?Action=ConfirmSubscription&Token=x", host="localhost")
    envelope = sns.envelope("Subscribe?", kind="SubscriptionConfirmation", subscribe_url=foreign)
    sns.https.hits.clear()

    response = sns.post(client, envelope)

    assert (response.status_code, response.json["error"]["code"]) == (403, "subscribe_url_refused")
    assert not any("ConfirmSubscription" in hit for hit in sns.https.hits)


def test_the_default_certificate_hosts_are_snss_own(app) -> None:
    from mailing.provider_signatures import is_sns_url

    with app.app_context():
        assert is_sns_url("https://sns.eu-north-1.amazonaws.com/SimpleNotificationService-a.pem")
        assert is_sns_url("https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-a.pem")
        for url in (
            "http://sns.eu-north-1.amazonaws.com/a.pem",
            "https://sns.eu-north-1.amazonaws.com.evil.example/a.pem",
            "https://evil.example/sns.eu-north-1.amazonaws.com/a.pem",
            "https://user@sns.eu-north-1.amazonaws.com/a.pem",
            "https://s3.amazonaws.com/a.pem",
        ):
            assert not is_sns_url(url), url


# --- Postmark ---------------------------------------------------------------------------------


def _postmark(client: Any, body: dict[str, Any], headers: dict[str, str]) -> Any:
    return client.post(
        "/webhooks/bounces/postmark",
        data=json.dumps(body),
        headers={"Content-Type": "application/json", **headers},
    )


def test_a_postmark_hard_bounce_with_the_credentials_makes_the_address_undeliverable(
    client, admin_api, anna, postmark
) -> None:
    response = _postmark(client, postmark_bounce(ANNA), basic_auth(postmark))
    assert response.status_code == 200 and response.json["recorded"] == 1
    assert newsletter_reason(admin_api, anna["id"]) == "undeliverable"


def test_a_postmark_spam_complaint_is_an_objection(client, admin_api, anna, postmark) -> None:
    response = _postmark(client, postmark_bounce(ANNA, "SpamComplaint"), basic_auth(postmark))
    assert response.status_code == 200 and response.json["recorded"] == 1
    assert newsletter_reason(admin_api, anna["id"]) == "objection"


def test_a_postmark_auto_responder_is_no_bounce(app, client, admin_api, anna, postmark) -> None:
    before = count_rows(app)
    response = _postmark(client, postmark_bounce(ANNA, "AutoResponder"), basic_auth(postmark))
    assert response.status_code == 200 and response.json["skipped"] == 1
    _unchanged(app, before, admin_api, anna["id"])


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({}, 401, "credentials_missing"),
        (basic_auth("postmark:wrong-password"), 403, "credentials_invalid"),
        (basic_auth(POSTMARK_AUTH + "x"), 403, "credentials_invalid"),
        ({"Authorization": "Bearer " + POSTMARK_AUTH}, 401, "credentials_missing"),
        ({"Authorization": "Basic not-base64!"}, 403, "credentials_invalid"),
    ],
    ids=["none", "wrong", "longer", "not-basic", "garbled"],
)
def test_a_postmark_post_without_the_credentials_changes_nothing(
    app, client, admin_api, anna, postmark, headers, status, code
) -> None:
    before = count_rows(app)
    response = _postmark(client, postmark_bounce(ANNA), headers)
    assert (response.status_code, response.json["error"]["code"]) == (status, code)
    if status == 401:
        assert response.headers["WWW-Authenticate"].startswith("Basic")
    _unchanged(app, before, admin_api, anna["id"])


def test_postmark_posts_are_refused_while_no_credentials_are_configured(
    app, client, admin_api, anna
) -> None:
    before = count_rows(app)
    response = _postmark(client, postmark_bounce(ANNA), basic_auth(POSTMARK_AUTH))
    assert (response.status_code, response.json["error"]["code"]) == (
        403,
        "provider_not_configured",
    )
    _unchanged(app, before, admin_api, anna["id"])


# --- SendGrid ---------------------------------------------------------------------------------


def test_a_signed_sendgrid_bounce_makes_the_address_undeliverable(
    client, admin_api, anna, sendgrid
) -> None:
    events = [
        sendgrid_event(ANNA, "delivered"),
        sendgrid_event(ANNA, "bounce", **{"smtp-id": anna["message_id"]}),
        sendgrid_event(ANNA, "open"),
    ]
    response = sendgrid.post(client, events)
    assert response.status_code == 200, response.json
    assert (response.json["recorded"], response.json["skipped"]) == (1, 2)
    assert newsletter_reason(admin_api, anna["id"]) == "undeliverable"


def test_a_signed_sendgrid_spam_report_is_an_objection(client, admin_api, anna, sendgrid) -> None:
    response = sendgrid.post(client, [sendgrid_event(ANNA, "spamreport")])
    assert response.status_code == 200 and response.json["recorded"] == 1
    assert newsletter_reason(admin_api, anna["id"]) == "objection"


def test_the_same_sendgrid_post_twice_is_recorded_once(client, admin_api, anna, sendgrid) -> None:
    events = [sendgrid_event(ANNA, "bounce", **{"smtp-id": anna["message_id"]})]
    assert sendgrid.post(client, events).json["recorded"] == 1
    again = sendgrid.post(client, events)
    assert (again.json["recorded"], again.json["duplicate"]) == (0, 1)


def _sendgrid_forged(case: str, sendgrid: SendGridStandIn) -> tuple[bytes, dict[str, str]]:
    body = json.dumps([sendgrid_event(ANNA, "bounce")]).encode()
    if case == "tampered body":
        headers = sendgrid.headers(json.dumps([sendgrid_event("x@kund.example")]).encode())
    elif case == "stale":
        headers = sendgrid.headers(body, signed_at=datetime.now(UTC) - timedelta(minutes=20))
    elif case == "signed by another key":
        headers = SendGridStandIn().headers(body)
    elif case == "timestamp swapped":
        headers = sendgrid.headers(body)
        headers["X-Twilio-Email-Event-Webhook-Timestamp"] = str(
            int(datetime.now(UTC).timestamp()) + 1
        )
    elif case == "no signature":
        headers = sendgrid.headers(body)
        del headers["X-Twilio-Email-Event-Webhook-Signature"]
    else:  # no timestamp
        headers = sendgrid.headers(body)
        del headers["X-Twilio-Email-Event-Webhook-Timestamp"]
    return body, headers


FORGED_SENDGRID = {
    "tampered body": (403, "signature_invalid"),
    "stale": (403, "signature_stale"),
    "signed by another key": (403, "signature_invalid"),
    "timestamp swapped": (403, "signature_invalid"),
    "no signature": (401, "signature_missing"),
    "no timestamp": (401, "signature_missing"),
}


@pytest.mark.parametrize("case", sorted(FORGED_SENDGRID))
def test_a_forged_sendgrid_post_changes_nothing(
    app, client, admin_api, anna, sendgrid, case, caplog
) -> None:
    body, headers = _sendgrid_forged(case, sendgrid)
    status, code = FORGED_SENDGRID[case]
    before = count_rows(app)

    with caplog.at_level(logging.WARNING, logger="mailing.provider_webhooks"):
        response = client.post(
            "/webhooks/bounces/sendgrid",
            data=body,
            headers={"Content-Type": "application/json", **headers},
        )

    assert (response.status_code, response.json["error"]["code"]) == (status, code)
    _unchanged(app, before, admin_api, anna["id"])
    [record] = caplog.records
    assert ANNA not in record.getMessage()


def test_sendgrid_posts_are_refused_while_no_key_is_configured(
    app, client, admin_api, anna
) -> None:
    before = count_rows(app)
    response = SendGridStandIn().post(client, [sendgrid_event(ANNA)])
    assert (response.status_code, response.json["error"]["code"]) == (
        403,
        "provider_not_configured",
    )
    _unchanged(app, before, admin_api, anna["id"])


# --- every provider ---------------------------------------------------------------------------


@pytest.mark.parametrize("provider", ["ses", "postmark", "sendgrid"])
def test_a_body_over_the_limit_is_refused_before_it_is_read(
    app, client, provider, monkeypatch
) -> None:
    monkeypatch.setitem(app.config, "BOUNCE_WEBHOOK_MAX_BYTES", 1000)
    before = count_rows(app)
    response = client.post(
        f"/webhooks/bounces/{provider}",
        data=b"[" + b'"x",' * 400 + b'"x"]',
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert count_rows(app) == before


@pytest.mark.parametrize("provider", ["ses", "postmark", "sendgrid"])
def test_the_webhooks_need_no_csrf_token_but_refuse_a_get(app, provider) -> None:
    protected = app.test_client()
    app.config["WTF_CSRF_ENABLED"] = True
    try:
        response = protected.post(f"/webhooks/bounces/{provider}", data=b"{}")
    finally:
        app.config["WTF_CSRF_ENABLED"] = False
    # Refused for want of a proof (or a configuration), never for want of a CSRF token.
    assert response.status_code in (401, 403)
    assert protected.get(f"/webhooks/bounces/{provider}").status_code == 405


def test_each_webhook_is_rate_limited_per_client(app, database_url, request) -> None:
    """With the limits on (this test's own app), a client posting more than
    ``BOUNCE_WEBHOOK_LIMIT`` is answered 429 before anything is verified."""
    from app import create_app
    from extensions import limiter
    from tests.conftest import TEST_CONFIG

    def limits_back_off() -> None:
        limiter.enabled = False
        limiter.reset()

    request.addfinalizer(limits_back_off)
    limited = create_app(
        {
            **TEST_CONFIG,
            "SQLALCHEMY_DATABASE_URI": database_url,
            "RATELIMIT_ENABLED": True,
            "BOUNCE_WEBHOOK_LIMIT": "3 per minute",
        }
    )
    client = limited.test_client()
    statuses = [client.post("/webhooks/bounces/sendgrid", data=b"[]").status_code for _ in range(5)]
    assert statuses == [403, 403, 403, 429, 429]
    # Another provider's route counts on its own.
    assert client.post("/webhooks/bounces/postmark", data=b"{}").status_code == 403
