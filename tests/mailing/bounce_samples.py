"""Returned mail as MTAs and mailbox providers write it, for the bounce tests, and
running ``flask bounces ingest`` in a real subprocess as an MTA's pipe does."""

from __future__ import annotations

import os
import subprocess
import sys
from email.message import EmailMessage
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def original(to: str, message_id: str | None, sender: str = "no-reply@localhost") -> bytes:
    """The headers of a message we sent, as a report returns them."""
    lines = [f"From: {sender}", f"To: {to}", "Subject: News in November"]
    if message_id:
        lines.append(f"Message-ID: {message_id}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def dsn(
    *,
    to: str,
    recipient: str,
    status: str = "5.1.1",
    action: str = "failed",
    message_id: str | None = None,
    diagnostic: str = "smtp; 550 5.1.1 <{r}>: Recipient address rejected: User unknown",
    extra_headers: dict[str, str] | None = None,
) -> bytes:
    """An RFC 3464 delivery status notification, as Postfix writes one."""
    extra = "".join(f"{name}: {value}\r\n" for name, value in (extra_headers or {}).items())
    text = (
        "From: MAILER-DAEMON@mx.example.net (Mail Delivery System)\r\n"
        f"To: {to}\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        "Auto-Submitted: auto-replied\r\n"
        f"{extra}"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="BOUNDARY"\r\n'
        "\r\n"
        "--BOUNDARY\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n"
        "\r\n"
        "I'm sorry to have to inform you that your message could not be delivered.\r\n"
        "\r\n"
        "--BOUNDARY\r\n"
        "Content-Type: message/delivery-status\r\n"
        "\r\n"
        "Reporting-MTA: dns; mx.example.net\r\n"
        "Arrival-Date: Sun,  6 Dec 2026 09:00:00 +0000 (UTC)\r\n"
        "\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\n"
        f"Original-Recipient: rfc822;{recipient}\r\n"
        f"Action: {action}\r\n"
        f"Status: {status}\r\n"
        "Remote-MTA: dns; mx.example.net\r\n"
        f"Diagnostic-Code: {diagnostic.format(r=recipient)}\r\n"
        "\r\n"
        "--BOUNDARY\r\n"
        "Content-Type: text/rfc822-headers\r\n"
        "\r\n" + original(recipient, message_id).decode() + "--BOUNDARY--\r\n"
    )
    return text.encode()


def arf(*, to: str, recipient: str | None, message_id: str | None) -> bytes:
    """An RFC 5965 abuse report (a person pressed "this is spam")."""
    rcpt = f"Original-Rcpt-To: <{recipient}>\r\n" if recipient else ""
    text = (
        "From: feedbackloop@provider.example\r\n"
        f"To: {to}\r\n"
        "Subject: Abuse report\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=feedback-report; boundary="ARF"\r\n'
        "\r\n"
        "--ARF\r\n"
        "Content-Type: text/plain\r\n"
        "\r\n"
        "This is an email abuse report for an email message.\r\n"
        "\r\n"
        "--ARF\r\n"
        "Content-Type: message/feedback-report\r\n"
        "\r\n"
        "Feedback-Type: abuse\r\n"
        "User-Agent: SomeGenerator/1.0\r\n"
        "Version: 1\r\n"
        f"{rcpt}"
        "\r\n"
        "--ARF\r\n"
        "Content-Type: message/rfc822\r\n"
        "\r\n"
        + original(recipient or "redacted@provider.example", message_id).decode()
        + "Hello! Here is this month's news.\r\n"
        "--ARF--\r\n"
    )
    return text.encode()


def out_of_office(*, to: str, sender: str) -> bytes:
    """A vacation notice (RFC 3834), which says the address works."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = "Out of office: News in November"
    message["Auto-Submitted"] = "auto-replied"
    message["X-Autoreply"] = "yes"
    message["Precedence"] = "auto_reply"
    message.set_content("I am out of the office until Monday and have no access to email.")
    return message.as_bytes()


def qmail_bounce(*, to: str, recipient: str) -> bytes:
    """A qmail bounce: no DSN, only text (what flufl.bounce's detectors read)."""
    message = EmailMessage()
    message["From"] = "MAILER-DAEMON@mx.example.net"
    message["To"] = to
    message["Subject"] = "failure notice"
    message.set_content(
        "Hi. This is the qmail-send program at mx.example.net.\n"
        "I'm afraid I wasn't able to deliver your message to the following addresses.\n"
        "This is a permanent error; I've given up. Sorry it didn't work out.\n\n"
        f"<{recipient}>:\n"
        "Sorry, no mailbox here by that name. (#5.1.1)\n\n"
        "--- Below this line is a copy of the message.\n\n"
        "Return-Path: <no-reply@localhost>\n"
    )
    return message.as_bytes()


def flask_env(app: Any, **extra: str) -> dict[str, str]:
    """The environment of a ``flask`` subprocess on the test's database and keys."""
    config = app.config
    env = {
        **os.environ,
        "FLASK_APP": "app",
        "CONSENT_ENV": "testing",
        "SECRET_KEY": config["SECRET_KEY"],
        "SUPPRESSION_KEY": config["SUPPRESSION_KEY"],
        "DATABASE_URL": config["SQLALCHEMY_DATABASE_URI"],
        "MAIL_FROM": config["MAIL_FROM"],
        "POLICY_FILE": config["POLICY_FILE"],
        "BOUNCE_ADDRESS": config.get("BOUNCE_ADDRESS") or "",
        "PYTHONPATH": str(ROOT),
        **extra,
    }
    return env


def ingest(app: Any, raw: bytes, *args: str, **env: str) -> subprocess.CompletedProcess[bytes]:
    """``flask bounces ingest -`` in a real process, the message on its standard input."""
    return subprocess.run(
        [sys.executable, "-m", "flask", "bounces", "ingest", "-", *args],
        input=raw,
        env=flask_env(app, **env),
        cwd=ROOT,
        capture_output=True,
        timeout=120,
        check=False,
    )
