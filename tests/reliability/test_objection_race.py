"""Row "objections committed while campaigns send, 10 runs": 0 messages sent
after the objection's commit.

Campaigns are not on main yet, so this queues marketing outbox rows through
``mailing.outbox.queue_email`` the way a campaign does, hands them to a real
dramatiq worker (4 threads) and records objections from another thread while
it sends. The SMTP server stamps the moment it accepts each message.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

from consent.claims import ExternalConfirmation
from consent.evidence import Evidence
from consent.models import Basis
from consent.policies import wording_hash
from consent.services import BasisInput, record_objection, register_contact
from consent.topics import current_policy
from extensions import db
from kernel.access import SYSTEM_ACTOR
from kernel.timestamps import utcnow
from mailing import outbox
from mailing.models import MailKind
from tests.reliability.conftest import figure, scale


def _campaign(app: Any, run: int, size: int) -> list[tuple[int, str]]:
    contacts = []
    with app.app_context():
        evidence = Evidence(form_id="import", policy_version=current_policy().version,
                            wording_hash=wording_hash("Yes, send me the newsletter."))  # fmt: skip
        # The newsletter always needs the double opt-in (R8): confirmed elsewhere, with its evidence.
        confirmed = ExternalConfirmation(confirmed_at=utcnow(), ip_address="192.0.2.1",
                                         message_id=f"<race-{run}@example.se>")  # fmt: skip
        basis = BasisInput(type=Basis.CONSENT, source="import", topics=["newsletter"],
                           obtained_at=utcnow() - timedelta(minutes=5), evidence=evidence,
                           confirmation=confirmed)  # fmt: skip
        for n in range(size):
            contact = register_contact(
                SYSTEM_ACTOR, f"r{run}-{n}@example.se", {}, basis=basis
            ).contact
            contacts.append((contact.id, contact.email))
        ids = [
            outbox.queue_email(
                db.session.get(type(contact), cid),
                kind=MailKind.MARKETING,
                template="bulletin",
                topic="newsletter",
                idempotency_key=f"race:{run}:{cid}",
                params={"subject": f"Bulletin {run}", "body": "News."},
            ).id
            for cid, _ in contacts
        ]
        db.session.commit()
        outbox.hand_over(ids)
        db.session.remove()
    return contacts


def test_no_message_leaves_after_the_objection_commits(app, smtp, mail_worker) -> None:
    runs, size = scale(10, 10), scale(40, 400)
    accepted_at: dict[str, float] = {}
    original = smtp.controller.handler.handle_DATA  # type: ignore[union-attr]

    async def stamped(server, session, envelope):  # type: ignore[no-untyped-def]
        result = await original(server, session, envelope)
        for rcpt in envelope.rcpt_tos:
            accepted_at.setdefault(rcpt, time.monotonic())
        return result

    smtp.controller.handler.handle_DATA = stamped  # type: ignore[union-attr]
    late: list[str] = []
    objected = blocked = 0
    for run in range(runs):
        contacts = _campaign(app, run, size)
        committed_at: dict[str, float] = {}

        def object_half(contacts: list[tuple[int, str]], committed_at: dict[str, float]) -> None:
            with app.app_context():
                for cid, address in contacts[1::2]:
                    record_objection(SYSTEM_ACTOR, cid, received_via="email")
                    committed_at[address] = time.monotonic()
                db.session.remove()

        objector = threading.Thread(target=object_half, args=(contacts, committed_at))
        objector.start()
        objector.join()
        mail_worker.drain(timeout_ms=60_000)
        objected += len(committed_at)
        for address, at in committed_at.items():
            if address in accepted_at and accepted_at[address] > at:
                late.append(address)
            blocked += address not in accepted_at
    figure("objection_race", runs=runs, campaign_size=size, objections=objected,
           stopped=blocked, sent_after_commit=len(late))  # fmt: skip
    assert late == []
