"""Email to staff users (not contacts): the password-reset link.

Staff are not contacts, so this mail passes neither the consent decision nor
the contacts' outbox: it is one transactional message to the account's own
address, built and sent by the worker from the user's id, with the link
signed at the moment it leaves (``crm.accounts.password_reset_token``).
"""

from __future__ import annotations

import logging
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from flask import current_app, render_template

from crm import accounts
from extensions import db
from kernel.i18n import translate as _
from kernel.models import StaffUser
from kernel.timestamps import utcnow
from mailing import mime, transport
from mailing.messages import brand_name, from_address, mailbox, one_line, recipient, sender_domain

log = logging.getLogger(__name__)


def build_password_reset(user: StaffUser) -> EmailMessage:
    """The reset email for ``user``, its link valid from now."""
    link = (
        current_app.config["PUBLIC_BASE_URL"]
        + "/staff/password-reset/"
        + accounts.password_reset_token(user)
    )
    rendered = render_template(
        "staff_email/password_reset.txt",
        brand=brand_name() or _("the consent service"),
        name=user.name,
        email=user.email,
        reset_url=link,
        minutes=int(accounts.reset_max_age().total_seconds() // 60),
    )
    subject_line, _newline, body = rendered.lstrip().partition("\n")
    message = EmailMessage(policy=mime.MESSAGE_POLICY)
    message["Subject"] = one_line(subject_line.removeprefix("Subject:"))
    message["From"] = from_address(current_app.config["MAIL_FROM"])
    message["To"] = recipient(user.name, mailbox(user.email))
    message["Date"] = format_datetime(utcnow())
    message["Message-ID"] = make_msgid(domain=sender_domain())
    message["Auto-Submitted"] = "auto-generated"
    text = body.strip() + "\n"
    message.set_content(text, cte=mime.transfer_encoding(text))
    return message


def send_password_reset(user_id: int) -> str | None:
    """Mail ``user_id`` a reset link; None (nothing sent) when the user is gone
    or inactive by the time the worker runs. Returns where the mail went."""
    user = db.session.get(StaffUser, user_id)
    if user is None or not user.is_active:
        log.info("Password-reset email skipped: the staff user is gone or inactive")
        return None
    message = build_password_reset(user)
    stamp = utcnow().strftime("%Y%m%dT%H%M%S%f")
    return transport.send(message, f"staff-password-reset-{user.id}-{stamp}.eml")
