"""Handing a finished message to SMTP, or to a file when no SMTP server is configured.

Failures are sorted for the retry policy: a 4xx reply or a connection problem
is temporary (try again later); a 5xx reply is permanent (never retry).
Each thread keeps its SMTP connection for the next message (``send_smtp``).
"""

from __future__ import annotations

import email
import email.policy
import functools
import re
import smtplib
import ssl
import threading
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import EmailPolicy
from email.utils import getaddresses
from pathlib import Path
from typing import cast
from urllib.parse import unquote, urlsplit

from flask import current_app


class DeliveryError(Exception):
    """The message did not reach the SMTP server."""


class TemporaryFailure(DeliveryError):
    """Worth retrying: a 4xx reply, a refused or dropped connection, a timeout."""


class PermanentFailure(DeliveryError):
    """Never retried: the server refused the message or the recipient (5xx)."""


# An RFC 3463 enhanced status code at the start of a reply ("5.1.1 No such mailbox").
_ENHANCED_STATUS = re.compile(r"^\s*([245]\.\d{1,3}\.\d{1,3})\b")


class RecipientRefused(PermanentFailure):
    """The server refused the recipient at ``RCPT TO`` with a 5xx reply: the
    mailbox does not exist there (or will never take our mail), which is a
    hard bounce that came back before the message even left."""

    def __init__(self, recipient: str, code: int, reply: str) -> None:
        super().__init__(f"SMTP {code} at RCPT TO: {reply}"[:500])
        self.recipient = recipient
        self.code = code
        self.reply = reply[:400]
        found = _ENHANCED_STATUS.match(reply)
        # Without an enhanced code in the reply, 5.0.0: "permanent, undefined" (RFC 3463).
        self.status = found.group(1) if found else "5.0.0"


@dataclass(frozen=True)
class PreparedMessage:
    """A message already in its wire form (CRLF line ends), with its envelope."""

    data: bytes
    sender: str
    recipient: str


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    username: str | None
    password: str | None
    implicit_tls: bool
    timeout: float = 30.0
    # SMTP_CA_FILE: the CAs trusted for this server instead of the system's.
    ca_file: str | None = None

    @classmethod
    def from_url(cls, url: str, ca_file: str | None = None) -> SmtpSettings:
        """``smtp://user:pass@host:587`` (STARTTLS when offered) or ``smtps://...:465``."""
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise RuntimeError("SMTP_URL must look like smtp://user:password@host:587")
        implicit = parts.scheme == "smtps"
        return cls(
            host=parts.hostname,
            port=parts.port or (465 if implicit else 587),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            implicit_tls=implicit,
            ca_file=ca_file or None,
        )


def send(
    message: EmailMessage | PreparedMessage, file_name: str, envelope_sender: str | None = None
) -> str:
    """Deliver ``message``; return where it went (for the log). ``envelope_sender``:
    the MAIL FROM returned mail goes to (``mailing.verp``), instead of the From address."""
    config = current_app.config
    url = config.get("SMTP_URL")
    if not url:
        return write_file(message, file_name, envelope_sender)
    settings = SmtpSettings.from_url(url, ca_file=config.get("SMTP_CA_FILE"))
    send_smtp(message, settings, envelope_sender)
    return f"smtp://{settings.host}:{settings.port}"


# One SMTP connection per thread, kept for the next message: a worker sending a
# campaign pays the TCP (and TLS) handshake, the greeting and EHLO once per
# connection rather than once per message. Servers limit both how many
# messages one connection may carry and how long it may sit idle.
MAX_MESSAGES_PER_CONNECTION = 100
MAX_IDLE_SECONDS = 30.0
# A connection idle for longer must answer RSET before it takes a message. One
# used a moment ago is trusted: servers drop idle connections after minutes,
# and a RSET per message would cost a campaign one round trip in five.
RSET_AFTER_IDLE_SECONDS = 1.0

_pool = threading.local()


@dataclass
class _Connection:
    settings: SmtpSettings
    server: smtplib.SMTP
    sent: int = 0
    last_used: float = field(default_factory=time.monotonic)
    # Reused without RSET: a server that hung up is noticed by the next message.
    unchecked: bool = False

    def __del__(self) -> None:
        # A thread that ends takes its kept connection with it.
        self.server.close()


def send_smtp(
    message: EmailMessage | PreparedMessage,
    settings: SmtpSettings,
    envelope_sender: str | None = None,
) -> None:
    try:
        connection = _connection(settings)
        try:
            _transmit(connection.server, message, envelope_sender)
        except (smtplib.SMTPServerDisconnected, smtplib.SMTPSenderRefused) as exc:
            hung_up = not isinstance(exc, smtplib.SMTPSenderRefused) or exc.smtp_code == 421
            if not (connection.unchecked and hung_up):
                raise
            # A connection reused without RSET that the server had closed (or was
            # closing, 421) fails at the envelope's first command: a new
            # connection takes the message rather than a retry minutes later.
            _discard()
            connection = _connection(settings)
            _transmit(connection.server, message, envelope_sender)
    except smtplib.SMTPRecipientsRefused as exc:
        _discard()
        codes = [code for code, _ in exc.recipients.values()]
        if codes and all(500 <= code < 600 for code in codes):
            # Every recipient refused for good (the service sends one per message).
            recipient, (code, reply) = next(iter(exc.recipients.items()))
            raise RecipientRefused(recipient, code, _text(reply)) from exc
        _raise_for_code(min(codes) if codes else 550, str(exc.recipients))
    except smtplib.SMTPResponseException as exc:
        _discard()
        _raise_for_code(exc.smtp_code, _text(exc.smtp_error))
    except ssl.SSLCertVerificationError as exc:
        _discard()
        # Temporary: the relay or SMTP_CA_FILE may be put right while the row waits.
        raise TemporaryFailure(
            f"TLS: the certificate of {settings.host}:{settings.port} is not trusted "
            f"({exc.verify_message}); a relay with a certificate from its own CA "
            f"needs that CA in SMTP_CA_FILE"
        ) from exc
    except (smtplib.SMTPException, OSError) as exc:
        _discard()
        # Refused, reset or timed-out connections, TLS trouble, a server that hung up.
        raise TemporaryFailure(f"{type(exc).__name__}: {exc}") from exc
    connection.sent += 1
    connection.last_used = time.monotonic()
    if connection.sent >= MAX_MESSAGES_PER_CONNECTION:
        _discard(polite=True)


def _transmit(
    server: smtplib.SMTP,
    message: EmailMessage | PreparedMessage,
    envelope_sender: str | None = None,
) -> None:
    """Hand the message over: its envelope, and its bytes declared as what they
    are (SMTPUTF8, BODY=8BITMIME), or made 7-bit for a server that takes no more."""
    options: list[str] = []
    if isinstance(message, PreparedMessage):
        sender, recipients, data = message.sender, [message.recipient], message.data
    else:
        sender, recipients = _envelope(message)
        international = not all(a.isascii() for a in [sender, *recipients])
        if international and not server.has_extn("smtputf8"):
            # Before the envelope, so the connection stays usable. Another try
            # would meet the same server.
            raise PermanentFailure(
                "The mail server does not take addresses with letters outside ASCII "
                "before the @-sign (it does not offer SMTPUTF8)."
            )
        if international:
            options.append("SMTPUTF8")  # RFC 6531: the headers travel in UTF-8
        policy = cast(EmailPolicy, message.policy).clone(linesep="\r\n", utf8=international)
        data = message.as_bytes(policy=policy)
    sender = envelope_sender or sender
    if not data.isascii():
        if server.has_extn("8bitmime") or "SMTPUTF8" in options:
            # RFC 6152: 8-bit data must be declared (SMTPUTF8 implies 8BITMIME).
            options.append("BODY=8BITMIME")
        else:
            data = _seven_bit(data)
    server.sendmail(sender, recipients, data, options)


def _envelope(message: EmailMessage) -> tuple[str, list[str]]:
    """The envelope from the parsed ``From`` and ``To`` (and ``Cc``) headers."""
    senders = [a.addr_spec for h in message.get_all("From", []) for a in h.addresses]
    recipients = [
        a.addr_spec for name in ("To", "Cc") for h in message.get_all(name, []) for a in h.addresses
    ]
    if not senders or not recipients:
        raise PermanentFailure("The message names no sender or no recipient.")
    return senders[0], recipients


# A server that does not offer 8BITMIME takes 7-bit data only (RFC 6152): the
# generator re-encodes each 8-bit text part (base64) and leaves the headers,
# ASCII already, as they were written.
_SEVEN_BIT = email.policy.SMTP.clone(cte_type="7bit", refold_source="none")


def _seven_bit(data: bytes) -> bytes:
    return email.message_from_bytes(data, policy=_SEVEN_BIT).as_bytes(policy=_SEVEN_BIT)


def _ascii_addresses(message: EmailMessage) -> bool:
    """Whether sender and recipient are ASCII (else SMTPUTF8 must carry them)."""
    headers = [*message.get_all("From", []), *message.get_all("To", [])]
    return all(address.isascii() for _, address in getaddresses(headers))


def _connection(settings: SmtpSettings) -> _Connection:
    """This thread's open connection to the server, or a new one.

    A kept connection idle for more than ``RSET_AFTER_IDLE_SECONDS`` must
    answer RSET first: a server that closed it while it sat idle is noticed
    before a message is handed over, never in the middle of one (which could
    leave the message delivered and then sent again).
    """
    current: _Connection | None = getattr(_pool, "connection", None)
    if current is not None:
        idle = time.monotonic() - current.last_used
        fresh = idle < MAX_IDLE_SECONDS
        if current.settings == settings and idle < RSET_AFTER_IDLE_SECONDS:
            current.unchecked = True
            return current
        if current.settings == settings and fresh:
            try:
                code, _ = current.server.rset()
                if code == 250:
                    current.unchecked = False
                    return current
            except (smtplib.SMTPException, OSError):
                pass
        _discard(polite=fresh)
    _pool.connection = _Connection(settings, _open(settings))
    return _pool.connection


def _open(settings: SmtpSettings) -> smtplib.SMTP:
    context = _tls_context(settings.ca_file)
    if settings.implicit_tls:
        server: smtplib.SMTP = smtplib.SMTP_SSL(
            settings.host, settings.port, timeout=settings.timeout, context=context
        )
    else:
        server = smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout)
    try:
        server.ehlo()
        if not settings.implicit_tls and server.has_extn("starttls"):
            server.starttls(context=context)
            server.ehlo()
        if settings.username:
            server.login(settings.username, settings.password or "")
    except BaseException:
        server.close()
        raise
    return server


def close_connection() -> None:
    """Say goodbye on this thread's kept connection, if any."""
    _discard(polite=True)


def _discard(polite: bool = False) -> None:
    """Forget this thread's connection: QUIT when it is healthy, else just close."""
    current: _Connection | None = getattr(_pool, "connection", None)
    _pool.connection = None
    if current is None:
        return
    try:
        if polite:
            current.server.quit()
    except (smtplib.SMTPException, OSError):
        pass
    finally:
        current.server.close()


@functools.cache
def _tls_context(ca_file: str | None) -> ssl.SSLContext:
    """The verifying TLS context: the system's CAs, or only those in ``ca_file``
    (SMTP_CA_FILE), for a relay with a certificate from a CA of its own. Only,
    so that no public CA can vouch for a name the relay's own CA stands for.
    Cached: loading a CA bundle is slow, one context serves every connection."""
    if ca_file is None:
        return ssl.create_default_context()
    try:
        return ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise TemporaryFailure(f"SMTP_CA_FILE {ca_file} cannot be read: {exc}") from exc


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _raise_for_code(code: int, detail: str) -> None:
    if 500 <= code < 600:
        raise PermanentFailure(f"SMTP {code}: {detail}"[:500])
    raise TemporaryFailure(f"SMTP {code}: {detail}"[:500])


def _file_bytes(message: EmailMessage) -> bytes:
    """The message as a mailbox would store it: with an address outside ASCII,
    in UTF-8 as SMTPUTF8 carries it (the ASCII form would mangle the address)."""
    if _ascii_addresses(message):
        return bytes(message)
    policy = cast(EmailPolicy, message.policy)
    return message.as_bytes(policy=policy.clone(utf8=True))


def mail_folder() -> Path:
    configured = current_app.config.get("MAIL_FOLDER")
    return Path(configured) if configured else Path(current_app.instance_path) / "mail"


def write_file(
    message: EmailMessage | PreparedMessage, file_name: str, envelope_sender: str | None = None
) -> str:
    """No SMTP configured: keep the message as an .eml file a developer can open,
    with the envelope sender as a mailbox stores it (``Return-Path``)."""
    folder = mail_folder()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / file_name
    data = message.data if isinstance(message, PreparedMessage) else _file_bytes(message)
    if envelope_sender:
        data = f"Return-Path: <{envelope_sender}>\r\n".encode() + data
    path.write_bytes(data)
    return str(path)
