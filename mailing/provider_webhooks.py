"""The routes mail providers post bounces and complaints to: ``/webhooks/bounces/<provider>``.

Called by Amazon SNS (for SES), Postmark and SendGrid, not by staff: no API
token and no CSRF token, but each post proves where it comes from
(``mailing.provider_signatures``) before anything in it is used. Each route
is rate-limited per client address (``BOUNCE_WEBHOOK_LIMIT``) and refuses a
body larger than ``BOUNCE_WEBHOOK_MAX_BYTES`` with 413. A refused post is
logged with the provider, the reason and the client's address, never its body.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from extensions import csrf, limiter
from mailing import provider_bounces
from mailing import provider_signatures as proof

log = logging.getLogger(__name__)

bp = Blueprint("bounce_webhooks", __name__, url_prefix="/webhooks/bounces")


def _limit() -> str:
    return str(current_app.config["BOUNCE_WEBHOOK_LIMIT"])


def _body() -> bytes:
    """The raw body, as the provider signed it, within the size limit."""
    limit = int(current_app.config["BOUNCE_WEBHOOK_MAX_BYTES"])
    if (request.content_length or 0) > limit:
        raise RequestEntityTooLarge()
    body = request.get_data(cache=True)
    if len(body) > limit:
        raise RequestEntityTooLarge()
    return body


def _answer(provider: str, receive: Callable[[], provider_bounces.Received]) -> Any:
    try:
        received = receive()
    except (proof.ProofMissing, proof.ProofRefused) as refusal:
        log.warning(
            "Bounce webhook from %s refused (%s) for %s",
            provider,
            refusal.code,
            request.remote_addr,
        )
        raise
    return jsonify(received.as_dict())


@bp.post("/ses")
@limiter.limit(_limit)
def ses() -> Any:
    """Amazon SNS: subscription confirmations and SES bounce/complaint notifications."""
    return _answer(
        proof.SES,
        lambda: provider_bounces.receive_ses(
            _body(), request.headers.get("x-amz-sns-message-type")
        ),
    )


@bp.post("/postmark")
@limiter.limit(_limit)
def postmark() -> Any:
    """Postmark's bounce and spam-complaint webhooks (basic auth in the URL)."""
    return _answer(
        proof.POSTMARK,
        lambda: provider_bounces.receive_postmark(_body(), request.headers.get("Authorization")),
    )


@bp.post("/sendgrid")
@limiter.limit(_limit)
def sendgrid() -> Any:
    """SendGrid's Signed Event Webhook."""
    return _answer(
        proof.SENDGRID,
        lambda: provider_bounces.receive_sendgrid(
            _body(),
            request.headers.get(proof.SENDGRID_SIGNATURE_HEADER),
            request.headers.get(proof.SENDGRID_TIMESTAMP_HEADER),
        ),
    )


@bp.after_request
def _ask_for_basic_auth(response: Response) -> Response:
    # Postmark's credentials are basic auth: a client that waits to be asked is asked for them.
    if response.status_code == 401 and request.endpoint == "bounce_webhooks.postmark":
        response.headers["WWW-Authenticate"] = 'Basic realm="bounces"'
    return response


def register(app: Flask) -> None:
    csrf.exempt(bp)
    app.register_blueprint(bp)
