"""Proof that a bounce webhook comes from the mail provider, checked before its content is used.

A provider posts bounces and complaints to ``/webhooks/bounces/<provider>``
(docs/bounces.md). Anyone on the internet can post there too, so each post
must prove where it comes from before a single event in it is acted on; a
post that does not prove it changes nothing and is refused with 401 (no
proof at all) or 403 (a proof that does not hold, or a provider that is not
configured here). Each check follows the provider's published documentation;
no vendor code is copied and no vendor library is needed (``cryptography``
does the arithmetic):

- **Amazon SES through SNS** ("Verifying the signatures of Amazon SNS
  messages", docs.aws.amazon.com/sns/latest/dg/sns-verify-signature-of-message.html):
  the envelope's ``Signature`` is an RSA PKCS#1 v1.5 signature, SHA1 for
  ``SignatureVersion`` 1 and SHA256 for 2, over a canonical string of
  ``name\\nvalue\\n`` pairs whose names depend on the message type; the key
  is in the X.509 certificate at ``SigningCertURL``, fetched only over HTTPS
  (certificate verified, no redirect) and only from a host that matches
  ``SNS_CERT_HOST_PATTERN`` (by default ``sns.<region>.amazonaws.com``).
  The ``TopicArn`` must be one of ``SES_SNS_TOPIC_ARNS``: SNS signs the
  messages of every AWS account's topics, so a valid signature alone proves
  only that *someone's* topic sent it.
- **SendGrid** ("Getting Started with the Event Webhook Security Features",
  twilio.com/docs/sendgrid): the Signed Event Webhook sends an ECDSA P-256
  signature (base64, DER) of the ``X-Twilio-Email-Event-Webhook-Timestamp``
  header's value followed by the raw body, in
  ``X-Twilio-Email-Event-Webhook-Signature``; the public key
  (``SENDGRID_WEBHOOK_PUBLIC_KEY``) is the one the SendGrid settings show.
- **Postmark**: its bounce and spam-complaint webhooks carry no signature;
  Postmark documents HTTP basic authentication in the webhook URL as the way
  to protect them. ``POSTMARK_WEBHOOK_AUTH`` (``user:password``) is required
  and compared in constant time.

Stale posts are refused too (``SNS_MAX_AGE_S``, ``SENDGRID_MAX_AGE_S``): a
signature never expires, so without a bound on its age a captured post could
be replayed for ever.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import http.client
import json
import logging
import re
import ssl
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from flask import current_app

from kernel.errors import NotAuthenticated, NotPermitted

log = logging.getLogger(__name__)

SES = "ses"
POSTMARK = "postmark"
SENDGRID = "sendgrid"
PROVIDERS = (SES, POSTMARK, SENDGRID)

SENDGRID_SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
SENDGRID_TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"

# Real SNS signing certificates live at https://sns.<region>.amazonaws.com/SimpleNotificationService-<id>.pem
# (amazonaws.com.cn in the China regions).
DEFAULT_SNS_CERT_HOST_PATTERN = r"sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?"
# A post signed longer ago than this is refused. SNS retries an HTTPS
# endpoint for up to an hour under the longest delivery policy, so its bound
# is wider than SendGrid's.
DEFAULT_SNS_MAX_AGE_S = 2 * 3600
DEFAULT_SENDGRID_MAX_AGE_S = 600
# Clocks differ: a signature a little in the future is not a forgery.
CLOCK_SKEW = timedelta(minutes=5)
# A PEM certificate is about 2 KB; nothing an honest host serves is larger.
MAX_CERTIFICATE_BYTES = 64 * 1024
CERTIFICATE_TIMEOUT_S = 5.0


class ProofRefused(NotPermitted):
    """A proof that does not hold (a bad signature, a stale one, a certificate
    from a foreign host, an unknown topic) or a provider not configured: 403."""


class ProofMissing(NotAuthenticated):
    """No proof at all (no signature header, no credentials): 401."""


def _config(name: str, default: Any = None) -> Any:
    value = current_app.config.get(name)
    return default if value in (None, "") else value


def _require(provider: str, setting: str) -> Any:
    value = _config(setting)
    if not value:
        raise ProofRefused(
            f"Bounce webhooks from {provider} are not configured here ({setting} is not set).",
            code="provider_not_configured",
        )
    return value


# --- Amazon SNS (SES notifications) -------------------------------------------------------

# The fields whose values SNS signs, in this order, per message type. "Subject"
# counts only when the message has one.
_SNS_SIGNED_FIELDS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": (
        "Message",
        "MessageId",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ),
    "UnsubscribeConfirmation": (
        "Message",
        "MessageId",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ),
}
_SNS_HASHES: dict[str, type[hashes.HashAlgorithm]] = {"1": hashes.SHA1, "2": hashes.SHA256}


@dataclass(frozen=True)
class SnsMessage:
    """An SNS envelope whose signature held: its type, topic and payload."""

    type: str
    message_id: str
    topic_arn: str
    message: str
    subscribe_url: str | None


def sns_string_to_sign(envelope: Mapping[str, Any]) -> bytes:
    """The canonical string SNS signs for ``envelope`` (its type decides the fields)."""
    fields = _SNS_SIGNED_FIELDS.get(envelope.get("Type"))  # type: ignore[arg-type]
    if fields is None:
        raise ProofRefused("Not an SNS message type this endpoint takes.", code="sns_unknown_type")
    text = []
    for name in fields:
        value = envelope.get(name)
        if name == "Subject" and value is None:
            continue
        if not isinstance(value, str):
            raise ProofRefused(f"The SNS message has no {name}.", code="sns_malformed")
        text.append(f"{name}\n{value}\n")
    return "".join(text).encode()


def _sns_envelope(body: bytes) -> dict[str, Any]:
    try:
        envelope = json.loads(body)
    except (ValueError, RecursionError):
        envelope = None
    if not isinstance(envelope, dict):
        raise ProofMissing("The body is not an SNS message.", code="signature_missing")
    return envelope


def verify_sns(body: bytes, message_type_header: str | None, now: datetime) -> SnsMessage:
    """The SNS message in ``body``, once its topic, age and signature hold.

    Raises ``ProofMissing`` for a body without a signature and ``ProofRefused``
    for anything that does not hold. Only the envelope is parsed; the payload
    (``Message``) is returned as the string SNS signed, untouched.
    """
    topics = {t.strip() for t in str(_require(SES, "SES_SNS_TOPIC_ARNS")).split(",") if t.strip()}
    envelope = _sns_envelope(body)
    if not envelope.get("Signature") or not envelope.get("SigningCertURL"):
        raise ProofMissing("The SNS message carries no signature.", code="signature_missing")
    kind = envelope.get("Type")
    if message_type_header is not None and message_type_header != kind:
        raise ProofRefused(
            "The x-amz-sns-message-type header names another type than the message.",
            code="sns_malformed",
        )
    string_to_sign = sns_string_to_sign(envelope)
    if envelope["TopicArn"] not in topics:
        raise ProofRefused(
            "The SNS topic is not one of SES_SNS_TOPIC_ARNS.", code="sns_topic_refused"
        )
    _check_age(envelope["Timestamp"], _config("SNS_MAX_AGE_S", DEFAULT_SNS_MAX_AGE_S), now)
    algorithm = _SNS_HASHES.get(str(envelope.get("SignatureVersion")))
    if algorithm is None:
        raise ProofRefused(
            "The SNS SignatureVersion is neither 1 nor 2.", code="sns_signature_version"
        )
    signature = _base64(envelope["Signature"])
    key = sns_certificate(str(envelope["SigningCertURL"]), now).public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise ProofRefused("The signing certificate holds no RSA key.", code="signature_invalid")
    try:
        key.verify(signature, string_to_sign, padding.PKCS1v15(), algorithm())
    except InvalidSignature:
        raise ProofRefused("The SNS signature does not hold.", code="signature_invalid") from None
    return SnsMessage(
        type=str(kind),
        message_id=str(envelope["MessageId"]),
        topic_arn=envelope["TopicArn"],
        message=envelope["Message"],
        subscribe_url=envelope.get("SubscribeURL"),
    )


def is_sns_url(url: str) -> bool:
    """Whether ``url`` is an HTTPS address on a host that may be SNS (``SNS_CERT_HOST_PATTERN``)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - a port that is not a number raises here
    except ValueError:
        return False
    pattern = _config("SNS_CERT_HOST_PATTERN", DEFAULT_SNS_CERT_HOST_PATTERN)
    return (
        parts.scheme == "https"
        and parts.username is None
        and parts.password is None
        and bool(parts.hostname)
        and re.fullmatch(pattern, parts.hostname or "") is not None
    )


# The certificates fetched, by URL: SNS signs with a handful, each valid for
# months, and fetching one per message would double every message's latency.
# A cache of this process only; another process fetches its own.
_certificates: dict[str, x509.Certificate] = {}
_certificates_lock = threading.Lock()
_MAX_CACHED_CERTIFICATES = 32


def sns_certificate(url: str, now: datetime) -> x509.Certificate:
    """The signing certificate at ``url``, fetched once per process, if the URL may be SNS's."""
    if not is_sns_url(url) or not urlsplit(url).path.endswith(".pem"):
        raise ProofRefused(
            "The signing certificate's URL is not an https:// .pem address on an SNS host.",
            code="certificate_url_refused",
        )
    with _certificates_lock:
        certificate = _certificates.get(url)
    if certificate is None:
        certificate = _fetch_certificate(url)
        with _certificates_lock:
            if len(_certificates) >= _MAX_CACHED_CERTIFICATES:
                _certificates.clear()
            _certificates[url] = certificate
    if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
        raise ProofRefused("The signing certificate is not valid now.", code="certificate_expired")
    return certificate


def forget_certificates() -> None:
    """Empty the certificate cache (tests that serve a new certificate at an old URL)."""
    with _certificates_lock:
        _certificates.clear()


def _tls_context() -> ssl.SSLContext:
    ca_file = _config("SNS_CA_FILE")
    return ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()


def https_get(url: str, max_bytes: int, code: str = "certificate_unavailable") -> bytes:
    """GET ``url`` over verified HTTPS, following no redirect; the body if 200 and small.

    Only ever called with a URL ``is_sns_url`` accepted (the certificate and
    the subscription confirmation), so it cannot be pointed elsewhere.
    """
    parts = urlsplit(url)
    connection = http.client.HTTPSConnection(
        parts.hostname or "",
        parts.port or 443,
        timeout=CERTIFICATE_TIMEOUT_S,
        context=_tls_context(),
    )
    try:
        connection.request("GET", (parts.path or "/") + (f"?{parts.query}" if parts.query else ""))
        response = connection.getresponse()
        data = response.read(max_bytes + 1)
        status = response.status
    except (OSError, http.client.HTTPException) as exc:
        raise ProofRefused(
            f"{parts.hostname} could not be fetched over HTTPS ({type(exc).__name__}).", code=code
        ) from None
    finally:
        connection.close()
    if status != 200 or len(data) > max_bytes:
        raise ProofRefused(f"{parts.hostname} answered {status} (or too much).", code=code)
    return data


def _fetch_certificate(url: str) -> x509.Certificate:
    data = https_get(url, MAX_CERTIFICATE_BYTES)
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError:
        raise ProofRefused(
            "The signing certificate cannot be read.", code="certificate_unavailable"
        ) from None


# --- SendGrid -----------------------------------------------------------------------------


def _sendgrid_key(configured: str) -> ec.EllipticCurvePublicKey:
    """The configured verification key: base64 DER as SendGrid shows it, or PEM."""
    text = configured.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_public_key(text.encode())
        else:
            key = serialization.load_der_public_key(base64.b64decode(text, validate=True))
    except (ValueError, binascii.Error, TypeError) as exc:
        raise RuntimeError(
            "SENDGRID_WEBHOOK_PUBLIC_KEY is not a public key (base64 DER or PEM)."
        ) from exc
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise RuntimeError("SENDGRID_WEBHOOK_PUBLIC_KEY is not an ECDSA P-256 key.")
    return key


def verify_sendgrid(
    body: bytes, signature: str | None, timestamp: str | None, now: datetime
) -> None:
    """Return when ``body`` is signed by the configured SendGrid key, recently; raise otherwise."""
    configured = _require(SENDGRID, "SENDGRID_WEBHOOK_PUBLIC_KEY")
    if not signature or not timestamp:
        raise ProofMissing(
            f"A signed event webhook carries {SENDGRID_SIGNATURE_HEADER} and "
            f"{SENDGRID_TIMESTAMP_HEADER}.",
            code="signature_missing",
        )
    if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
        raise ProofRefused("The signature timestamp is not a Unix time.", code="signature_invalid")
    signed_at = datetime.fromtimestamp(int(timestamp), now.tzinfo)
    _check_moment(signed_at, _config("SENDGRID_MAX_AGE_S", DEFAULT_SENDGRID_MAX_AGE_S), now)
    try:
        _sendgrid_key(configured).verify(
            _base64(signature), timestamp.encode() + body, ec.ECDSA(hashes.SHA256())
        )
    except InvalidSignature:
        raise ProofRefused(
            "The SendGrid signature does not hold.", code="signature_invalid"
        ) from None


# --- Postmark -----------------------------------------------------------------------------


def verify_postmark(authorization: str | None) -> None:
    """Return when the request carries the configured basic-auth credentials; raise otherwise."""
    configured = str(_require(POSTMARK, "POSTMARK_WEBHOOK_AUTH"))
    scheme, _, encoded = (authorization or "").partition(" ")
    if scheme.lower() != "basic" or not encoded.strip():
        raise ProofMissing(
            "Postmark's webhook URL must carry the credentials (https://user:password@...).",
            code="credentials_missing",
        )
    try:
        given = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        given = b""
    # Constant time: how long the comparison takes must not tell how much was right.
    if not hmac.compare_digest(given, configured.encode()):
        raise ProofRefused("The webhook credentials are not right.", code="credentials_invalid")


# --- shared -------------------------------------------------------------------------------


def _base64(value: object) -> bytes:
    try:
        return base64.b64decode(str(value), validate=True)
    except (binascii.Error, ValueError):
        raise ProofRefused("The signature is not base64.", code="signature_invalid") from None


def _check_age(value: object, max_age_s: object, now: datetime) -> None:
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        raise ProofRefused("The message's Timestamp is not a time.", code="sns_malformed") from None
    if moment.tzinfo is None:
        raise ProofRefused("The message's Timestamp has no zone.", code="sns_malformed")
    _check_moment(moment, max_age_s, now)


def _check_moment(moment: datetime, max_age_s: object, now: datetime) -> None:
    age = now - moment
    if age > timedelta(seconds=float(max_age_s)) or age < -CLOCK_SKEW:  # type: ignore[arg-type]
        raise ProofRefused(
            "The signature is too old (or dated in the future); a replay is refused.",
            code="signature_stale",
        )
