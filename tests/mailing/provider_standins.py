"""Local stand-ins for the mail providers that post bounces: Amazon SNS (for SES),
SendGrid and Postmark.

None of them can run here, so each is built from the provider's published
reference, not from its code, and signs (or authenticates) its posts the way
that reference says:

- ``SnsStandIn``: "Verifying the signatures of Amazon SNS messages" (AWS SNS
  developer guide): an RSA key whose certificate is served over HTTPS by
  ``HttpsServer`` (with a certificate from ``LocalCa``, which the app is told
  to trust through ``SNS_CA_FILE``), the canonical "name\\nvalue\\n" string per
  message type, SHA1 (SignatureVersion 1) or SHA256 (2). The SES payloads
  follow "Amazon SES notification contents" (bounce and complaint objects).
- ``SendGridStandIn``: "Getting Started with the Event Webhook Security
  Features" (Twilio SendGrid): an ECDSA P-256 key, the signature of the
  timestamp header's value followed by the body, base64 DER in
  ``X-Twilio-Email-Event-Webhook-Signature``; events per the "Event Webhook
  reference" (bounce, dropped, spamreport, delivered...).
- ``postmark_bounce`` / ``basic_auth``: Postmark's "Bounce webhook" and "Spam
  complaint webhook" payloads, with the basic-auth credentials Postmark sends
  when the webhook URL carries them.

The canonical SNS string is written out here again, on purpose differently
from ``mailing.provider_signatures``, so that a mistake there is not
repeated here.
"""

from __future__ import annotations

import base64
import json
import ssl
import threading
import uuid
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

TOPIC_ARN = "arn:aws:sns:eu-north-1:123456789012:ses-bounces"


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


class LocalCa:
    """A certificate authority of this test run, for the stand-ins' HTTPS server."""

    def __init__(self, folder: Path) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.now(UTC)
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(_name("Test CA"))
            .issuer_name(_name("Test CA"))
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.ca_file = folder / "ca.pem"
        self.ca_file.write_bytes(_pem(self.certificate))
        self.folder = folder

    def server_files(self) -> tuple[Path, Path]:
        """A certificate for 127.0.0.1 and localhost, and its key, as files."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.now(UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(_name("127.0.0.1"))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=30))
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.IPAddress(IPv4Address("127.0.0.1")), x509.DNSName("localhost")]
                ),
                critical=False,
            )
            .sign(self.key, hashes.SHA256())
        )
        cert_file, key_file = self.folder / "server.pem", self.folder / "server.key"
        cert_file.write_bytes(_pem(certificate))
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return cert_file, key_file


class HttpsServer:
    """An HTTPS server on 127.0.0.1 that serves registered paths and counts GETs."""

    def __init__(self, ca: LocalCa) -> None:
        self.files: dict[str, bytes] = {}
        self.hits: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.hits.append(self.path)
                body = outer.files.get(self.path)
                if self.path.startswith("/?Action=ConfirmSubscription"):
                    body = b"<ConfirmSubscriptionResponse/>"
                self.send_response(200 if body is not None else 404)
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*ca.server_files())
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"https://{host}:{self.port}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class SnsStandIn:
    """Amazon SNS posting to an HTTPS subscription, signing as its documentation says."""

    def __init__(self, https: HttpsServer, topic_arn: str = TOPIC_ARN) -> None:
        self.https = https
        self.topic_arn = topic_arn
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        now = datetime.now(UTC)
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(_name("sns.amazonaws.com"))
            .issuer_name(_name("sns.amazonaws.com"))
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=30))
            .sign(self.key, hashes.SHA256())
        )
        self.cert_path = f"/SimpleNotificationService-{uuid.uuid4().hex}.pem"
        https.files[self.cert_path] = _pem(self.certificate)
        self.cert_url = https.url(self.cert_path)

    @staticmethod
    def string_to_sign(envelope: dict[str, Any]) -> bytes:
        # The AWS guide's lists: a notification signs Message, MessageId, Subject
        # (only when present), Timestamp, TopicArn and Type; the two
        # confirmations sign Message, MessageId, SubscribeURL, Timestamp, Token,
        # TopicArn and Type. Each as its name, a newline, its value, a newline.
        if envelope["Type"] == "Notification":
            names = ["Message", "MessageId"]
            if "Subject" in envelope:
                names.append("Subject")
            names += ["Timestamp", "TopicArn", "Type"]
        else:
            names = ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn"]
            names.append("Type")
        return b"".join(f"{n}\n{envelope[n]}\n".encode() for n in names)

    def envelope(
        self,
        message: str,
        *,
        kind: str = "Notification",
        version: str = "2",
        subject: str | None = None,
        signed_at: datetime | None = None,
        topic_arn: str | None = None,
        cert_url: str | None = None,
        subscribe_url: str | None = None,
    ) -> dict[str, Any]:
        moment = signed_at or datetime.now(UTC)
        envelope: dict[str, Any] = {
            "Type": kind,
            "MessageId": str(uuid.uuid4()),
            "TopicArn": topic_arn or self.topic_arn,
            "Message": message,
            "Timestamp": moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment:%f}"[:3] + "Z",
            "SignatureVersion": version,
            "SigningCertURL": cert_url or self.cert_url,
        }
        if subject is not None:
            envelope["Subject"] = subject
        if kind != "Notification":
            envelope["Token"] = uuid.uuid4().hex * 2
            envelope["SubscribeURL"] = subscribe_url or self.https.url(
                "/?Action=ConfirmSubscription&Token=" + envelope["Token"]
            )
        else:
            envelope["UnsubscribeURL"] = self.https.url("/?Action=Unsubscribe")
        algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
        signature = self.key.sign(self.string_to_sign(envelope), padding.PKCS1v15(), algorithm)
        envelope["Signature"] = base64.b64encode(signature).decode()
        return envelope

    @staticmethod
    def post(client: Any, envelope: dict[str, Any]) -> Any:
        """Post as SNS does: JSON in a text/plain body, the type in a header."""
        return client.post(
            "/webhooks/bounces/ses",
            data=json.dumps(envelope),
            headers={
                "Content-Type": "text/plain; charset=UTF-8",
                "x-amz-sns-message-type": envelope.get("Type", ""),
                "x-amz-sns-message-id": envelope.get("MessageId", ""),
                "x-amz-sns-topic-arn": envelope.get("TopicArn", ""),
                "User-Agent": "Amazon Simple Notification Service Agent",
            },
        )


def ses_bounce(
    address: str,
    *,
    bounce_type: str = "Permanent",
    status: str = "5.1.1",
    message_id: str | None = None,
) -> str:
    """An SES bounce notification (the SNS ``Message``), as SES documents it."""
    mail: dict[str, Any] = {
        "timestamp": "2026-12-06T09:00:00.000Z",
        "source": "no-reply@localhost",
        "messageId": "0100018c-ses-id",
        "destination": [address],
    }
    if message_id:
        mail["headersTruncated"] = False
        mail["headers"] = [{"name": "Message-ID", "value": message_id}]
        mail["commonHeaders"] = {"messageId": message_id, "to": [address]}
    return json.dumps(
        {
            "notificationType": "Bounce",
            "bounce": {
                "bounceType": bounce_type,
                "bounceSubType": "General",
                "bouncedRecipients": [
                    {
                        "emailAddress": address,
                        "action": "failed",
                        "status": status,
                        "diagnosticCode": f"smtp; 550 {status} user unknown",
                    }
                ],
                "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
                "feedbackId": "0100018c-feedback",
                "reportingMTA": "dsn; a1-2.smtp-out.eu-north-1.amazonses.com",
            },
            "mail": mail,
        }
    )


def ses_complaint(address: str, feedback: str = "abuse") -> str:
    """An SES complaint notification, as SES documents it."""
    return json.dumps(
        {
            "notificationType": "Complaint",
            "complaint": {
                "complainedRecipients": [{"emailAddress": address}],
                "complaintFeedbackType": feedback,
                "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
                "feedbackId": "0100018c-complaint",
                "userAgent": "Yahoo!-Mail-Feedback/1.0",
            },
            "mail": {"timestamp": "2026-12-06T09:00:00.000Z", "messageId": "0100018c-ses-id"},
        }
    )


class SendGridStandIn:
    """SendGrid's Signed Event Webhook: an ECDSA P-256 key pair of its own."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        # As the SendGrid settings page shows it: base64 of the DER public key.
        self.public_key = base64.b64encode(
            self.key.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        ).decode()

    def headers(self, body: bytes, signed_at: datetime | None = None) -> dict[str, str]:
        timestamp = str(int((signed_at or datetime.now(UTC)).timestamp()))
        signature = self.key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        return {
            "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
            "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
        }

    def post(self, client: Any, events: list[dict[str, Any]], **kwargs: Any) -> Any:
        body = json.dumps(events).encode()
        headers = {"Content-Type": "application/json", **self.headers(body, **kwargs)}
        return client.post("/webhooks/bounces/sendgrid", data=body, headers=headers)


def sendgrid_event(address: str, event: str = "bounce", **fields: Any) -> dict[str, Any]:
    """One event of SendGrid's event webhook, as its reference shows it."""
    found: dict[str, Any] = {
        "email": address,
        "timestamp": int(datetime.now(UTC).timestamp()),
        "event": event,
        "sg_event_id": uuid.uuid4().hex,
        "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
    }
    if event == "bounce":
        found.update(
            type="bounce", status="5.1.1", reason="550 5.1.1 The email account does not exist"
        )
    found.update(fields)
    return found


def postmark_bounce(address: str, kind: str = "HardBounce") -> dict[str, Any]:
    """A Postmark bounce webhook post (or a spam complaint for ``SpamComplaint``)."""
    return {
        "RecordType": "SpamComplaint" if kind == "SpamComplaint" else "Bounce",
        "ID": 4323372036854775807,
        "Type": kind,
        "TypeCode": {"HardBounce": 1, "SoftBounce": 4096, "SpamComplaint": 100001}.get(kind, 1),
        "Name": "Hard bounce",
        "Tag": "newsletter",
        "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
        "ServerID": 23,
        "MessageStream": "outbound",
        "Description": "The server was unable to deliver your message (ex: unknown user).",
        "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
        "Email": address,
        "From": "no-reply@localhost",
        "BouncedAt": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "DumpAvailable": True,
        "Inactive": True,
        "CanActivate": True,
        "Subject": "News",
        "Metadata": {},
    }


def basic_auth(credentials: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(credentials.encode()).decode()}
