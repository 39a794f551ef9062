"""Row "hypothesis: random sequences of signup, confirm, unsubscribe, object,
import, restrict, lift, erase, purge": 0 states where a decision is ``allowed``
without a basis, after an objection, while suppressed or while restricted.

The machine drives the real services (the ones the web pages and the API call)
and keeps a deliberately permissive model of what the person and the company
did; after every step, every decision the policy gives must be one the model
can justify.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from consent.evidence import Evidence
from consent.models import Basis, InterestKind
from consent.services import (
    BasisInput,
    check_permissions,
    lift_restriction,
    record_objection,
    register_contact,
    restrict_processing,
)
from consent.subscriptions import Scope, Signup
from consent.tokens import Purpose, make_token
from crm.models import Contact
from crm.services import remove_contacts
from extensions import broker, db
from kernel.access import SYSTEM_ACTOR
from kernel.errors import Conflict
from mailing import subscription_flows
from tests.reliability.conftest import LONG, figure

ADDRESSES = [f"p{n}@example.se" for n in range(3)]
TOPICS = ["newsletter", "events", "product-updates"]
EVIDENCE = Evidence(ip_address="192.0.2.1", form_id="hosted", language="en")
CHECKS = {"states": 0, "violations": 0}


@dataclass
class Person:
    consent: set[str] = field(default_factory=set)  # confirmed by the person since the last "no"
    interest: bool = False  # imported as a customer
    said_no: bool = False  # unsubscribed from all or objected since the import
    suppressed: bool = False  # objected; outlives erasure; only a confirmation lifts it
    # GDPR art. 18: while restricted, only the person's "no" changes anything.
    restricted: bool = False
    # Open requests are extended by later signups until confirmed (one per contact).
    requests: dict[int, set[str]] = field(default_factory=dict)


class ConsentMachine(RuleBasedStateMachine):
    app: Any = None

    def __init__(self) -> None:
        super().__init__()
        self.people = {address: Person() for address in ADDRESSES}
        self.ctx = self.app.app_context()
        self.ctx.push()

    def teardown(self) -> None:
        db.session.remove()
        with db.engine.begin() as conn:
            for table in reversed(db.metadata.sorted_tables):
                conn.execute(table.delete())
        broker.flush_all()
        self.ctx.pop()

    def _contact(self, address: str) -> Contact | None:
        return db.session.scalar(sa.select(Contact).where(Contact.email == address))

    @rule(address=st.sampled_from(ADDRESSES), topics=st.sets(st.sampled_from(TOPICS), min_size=1))
    def signup(self, address: str, topics: set[str]) -> None:
        chosen = tuple(sorted(topics))
        subscription_flows.subscribe(Signup(email=address, topics=chosen), EVIDENCE)
        from consent.models import SubscriptionRequest

        contact = self._contact(address)
        assert contact is not None
        latest = db.session.scalar(
            sa.select(sa.func.max(SubscriptionRequest.id)).where(
                SubscriptionRequest.contact_id == contact.id
            )
        )
        if latest is not None:
            self.people[address].requests.setdefault(latest, set()).update(chosen)

    @rule(address=st.sampled_from(ADDRESSES), pick=st.integers(0, 5))
    def confirm(self, address: str, pick: int) -> None:
        person = self.people[address]
        if not person.requests:
            return
        request_id = sorted(person.requests)[pick % len(person.requests)]
        topics = person.requests[request_id]
        if self._contact(address) is None:
            return  # erased: the link no longer works
        subscription_flows.confirm(make_token(Purpose.CONFIRM, {"r": request_id}), EVIDENCE)
        if person.restricted:
            return  # no yes is taken; the link works again once the restriction is lifted
        person.consent |= set(topics)
        person.suppressed = False

    @rule(
        address=st.sampled_from(ADDRESSES),
        topic=st.sampled_from(TOPICS),
        scope=st.sampled_from([Scope.TOPIC, Scope.ALL]),
    )
    def unsubscribe(self, address: str, topic: str, scope: Scope) -> None:
        contact = self._contact(address)
        if contact is None:
            return
        token = make_token(Purpose.UNSUBSCRIBE, {"c": contact.id, "t": topic})
        subscription_flows.unsubscribe(token, scope, EVIDENCE)
        person = self.people[address]
        if scope is Scope.TOPIC:
            person.consent.discard(topic)
        else:
            person.consent.clear()
            person.said_no = True

    @rule(address=st.sampled_from(ADDRESSES))
    def object(self, address: str) -> None:
        contact = self._contact(address)
        if contact is None:
            return
        record_objection(SYSTEM_ACTOR, contact.id, received_via="email")
        person = self.people[address]
        person.consent.clear()
        person.said_no = person.suppressed = True

    @rule(address=st.sampled_from(ADDRESSES))
    def import_customer(self, address: str) -> None:
        basis = BasisInput(
            type=Basis.LEGITIMATE_INTEREST, source="import", interest_kind=InterestKind.CUSTOMER
        )
        person = self.people[address]
        if person.restricted:
            # A sync that sends only the basis: refused, and nothing may change.
            try:
                register_contact(SYSTEM_ACTOR, address, {}, basis=basis)
            except Conflict:
                db.session.rollback()
            return
        register_contact(SYSTEM_ACTOR, address, {"name": "Imported"}, basis=basis)
        person.interest = True

    @rule(address=st.sampled_from(ADDRESSES))
    def restrict(self, address: str) -> None:
        contact = self._contact(address)
        if contact is None or contact.is_restricted:
            return
        restrict_processing(SYSTEM_ACTOR, contact.id, received_via="letter")
        self.people[address].restricted = True

    @rule(address=st.sampled_from(ADDRESSES))
    def lift(self, address: str) -> None:
        contact = self._contact(address)
        if contact is None or not contact.is_restricted:
            return
        lift_restriction(SYSTEM_ACTOR, contact.id)
        self.people[address].restricted = False

    def _forget(self, addresses: list[str]) -> None:
        ids = [c.id for a in addresses if (c := self._contact(a)) is not None]
        remove_contacts(ids)
        db.session.commit()
        for address in addresses:
            person = self.people[address]
            self.people[address] = Person(suppressed=person.suppressed)

    @rule(address=st.sampled_from(ADDRESSES))
    def erase(self, address: str) -> None:
        self._forget([address])

    @rule()
    def purge(self) -> None:
        """Retention: contacts with no consent and no customer basis go."""
        self._forget([a for a, p in self.people.items() if not p.consent and not p.interest])

    @invariant()
    def nothing_allowed_without_a_reason(self) -> None:
        for topic in TOPICS:
            for address, decision in zip(
                ADDRESSES, check_permissions(ADDRESSES, topic), strict=True
            ):
                person = self.people[address]
                justified = not person.restricted and (
                    topic in person.consent
                    or (person.interest and not person.said_no and not person.suppressed)
                )
                CHECKS["states"] += 1
                if decision.allowed and not justified:
                    CHECKS["violations"] += 1
                    raise AssertionError(f"{address} {topic}: {decision} but model {person}")
        db.session.remove()


def test_no_sequence_allows_marketing_without_a_reason(app) -> None:
    ConsentMachine.app = app
    CHECKS.update(states=0, violations=0)
    try:
        run_state_machine_as_test(
            ConsentMachine,
            settings=settings(
                max_examples=300 if LONG else 25,
                stateful_step_count=25,
                deadline=None,
                suppress_health_check=list(HealthCheck),
            ),
        )
    finally:
        figure("hypothesis", decisions_checked=CHECKS["states"], violations=CHECKS["violations"])
