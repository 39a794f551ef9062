"""The contact list (/staff/contacts): filters, keyset pages, the CSV export and
the bulk actions, through the pages as staff use them."""

from __future__ import annotations

import itertools
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from consent import bulk_actions, contact_list
from consent.contact_filters import ContactFilter, parse_filter
from consent.ledger import record
from consent.models import BulkAction, EventKind, InterestKind, PermissionState
from crm.models import AuditEntry, Company, Contact
from extensions import db
from kernel.access import Actor
from tests.staff.helpers import client_as

ACTOR = Actor(kind="cli", name="test")
_NUMBERS = itertools.count()


def _contacts(app: Any, n: int, **fields: Any) -> list[int]:
    with app.app_context():
        made = [
            Contact(email=f"p{next(_NUMBERS)}@example.se", name=f"Person {i}", **fields)
            for i in range(n)
        ]
        db.session.add_all(made)
        db.session.commit()
        ids = [c.id for c in made]
        db.session.remove()
    return ids


def _listed(app: Any, n: int) -> list[int]:
    """Contacts in Sweden with an industry-list basis."""
    ids = _contacts(app, n, country="SE")
    with app.app_context():
        for contact in db.session.scalars(sa.select(Contact).where(Contact.id.in_(ids))):
            record(
                contact,
                EventKind.BASIS_GRANTED,
                actor=ACTOR,
                source="import",
                basis="legitimate_interest",
                interest_kind=InterestKind.INDUSTRY_LIST.value,
                source_ref="import-batch:1",
            )
        db.session.commit()
        db.session.remove()
    return ids


def _audit(app: Any, action: str) -> list[AuditEntry]:
    with app.app_context():
        rows = list(
            db.session.scalars(
                sa.select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id)
            )
        )
        db.session.expunge_all()
        db.session.remove()
    return rows


def _ids_on(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'href="/staff/contacts/(\d+)"', html)]


# The page -------------------------------------------------------------------------


def test_the_list_shows_matching_contacts_linked_to_their_pages(app) -> None:
    se = _contacts(app, 3, country="SE")
    _contacts(app, 2, country="NO")
    client = client_as(app, "marketing")
    page = client.get("/staff/contacts?country=SE")
    assert page.status_code == 200
    assert _ids_on(page.get_data(as_text=True)) == se


def test_pages_follow_each_other_by_cursor_without_gaps_or_repeats(app, monkeypatch) -> None:
    monkeypatch.setattr(contact_list, "PAGE_SIZE", 4)
    ids = _contacts(app, 10, country="SE")
    client = client_as(app, "admin")
    seen: list[int] = []
    url = "/staff/contacts?country=SE"
    while url:
        html = client.get(url).get_data(as_text=True)
        seen += _ids_on(html)
        found = re.search(r'href="(/staff/contacts\?[^"]*after=\d+[^"]*)" rel="next"', html)
        url = found.group(1).replace("&amp;", "&") if found else ""
        assert "country=SE" in url or not url  # the filter rides along with the cursor
    assert seen == ids


def _statements_of_a_page(app: Any, client: Any, url: str) -> int:
    """How many SQL statements one request of ``url`` runs."""
    client.get(url)  # the sign-in's own first reads are not the page's
    seen: list[str] = []
    with app.app_context():
        engine = db.engine

        def count(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
            seen.append(statement)

        sa.event.listen(engine, "before_cursor_execute", count)
        try:
            assert client.get(url).status_code == 200
        finally:
            sa.event.remove(engine, "before_cursor_execute", count)
    return len(seen)


def test_a_pages_queries_do_not_grow_with_its_rows(app) -> None:
    # A contact loaded before the audit's commit expired with it, and the
    # template then reloaded each one by one: 50 more statements a page.
    _contacts(app, 2, country="SE")
    _contacts(app, 20, country="NO")
    client = client_as(app, "admin")
    few = _statements_of_a_page(app, client, "/staff/contacts?country=SE")
    many = _statements_of_a_page(app, client, "/staff/contacts?country=NO")
    assert many == few
    few = _statements_of_a_page(
        app, client, "/staff/contacts?country=SE&topic=events&channel=email"
    )
    many = _statements_of_a_page(
        app, client, "/staff/contacts?country=NO&topic=events&channel=email"
    )
    assert many == few


def test_a_page_sets_the_databases_planner_back(app) -> None:
    """The page's SELECT runs without JIT, parallel workers and (for a decision)
    merge and hash joins on PostgreSQL; what follows in the transaction runs
    with the server's own settings again."""
    ids = _listed(app, 3)
    names = ["jit", "max_parallel_workers_per_gather", "enable_mergejoin", "enable_hashjoin"]
    with app.app_context():
        if db.engine.dialect.name != "postgresql":
            pytest.skip("planner settings need a server database: runs on the suite's second pass")
        show = sa.text("SELECT name, setting FROM pg_settings WHERE name = ANY(:names)")
        before = dict(db.session.execute(show, {"names": names}).all())
        db.session.rollback()
        f = ContactFilter(topic="events", channel="email", decision="industry_list")
        # The page commits its audit entry; read the settings inside its own
        # transaction, after its SELECT, by holding the commit back.
        committed: list[dict[str, str]] = []
        real_commit = db.session.commit

        def commit() -> None:
            committed.append(dict(db.session.execute(show, {"names": names}).all()))
            real_commit()

        db.session.commit = commit  # type: ignore[method-assign]
        try:
            page = contact_list.list_page(ACTOR, f, 0, datetime.now(UTC))
        finally:
            del db.session.commit
        assert [row.contact.id for row in page.rows] == ids
        assert committed == [before]
        db.session.remove()


@pytest.mark.parametrize("rare", [0, 10_000])
def test_a_time_range_pages_the_same_read_from_its_index_or_by_ids(
    app, monkeypatch, rare: int
) -> None:
    """A rare time range is read from its column's index and sorted
    (``RARE_RANGE``), a common one by walking ids: the same rows, in id order,
    page after page."""
    monkeypatch.setattr(contact_list, "PAGE_SIZE", 3)
    monkeypatch.setattr(contact_list, "RARE_RANGE", rare)
    recent = datetime(2026, 12, 1, tzinfo=UTC)
    old = datetime(2020, 1, 1, tzinfo=UTC)
    ids = []
    for i in range(8):
        ids += _contacts(app, 1, country="SE", last_interaction_at=recent)
        _contacts(app, 1 + i % 2, country="SE", last_interaction_at=old)
    with app.app_context():
        f = parse_filter({"last_interaction_from": "2026-11-01"})
        assert contact_list._rare_range(f, 0, datetime(2026, 12, 6, tzinfo=UTC)) is (rare > 0)
        db.session.remove()
    client = client_as(app, "admin")
    seen: list[int] = []
    url = "/staff/contacts?last_interaction_from=2026-11-01"
    while url:
        html = client.get(url).get_data(as_text=True)
        seen += _ids_on(html)
        found = re.search(r'href="(/staff/contacts\?[^"]*after=\d+[^"]*)" rel="next"', html)
        url = found.group(1).replace("&amp;", "&") if found else ""
    assert seen == ids


def test_a_tampered_cursor_is_a_clear_400(app) -> None:
    client = client_as(app, "admin")
    for cursor in ("abc", "-1", "9" * 30, "1e3"):
        answer = client.get(f"/staff/contacts?after={cursor}")
        assert answer.status_code == 400, cursor
        assert "The page cursor is not valid" in answer.get_data(as_text=True)


def test_a_bad_filter_value_is_refused_with_its_reason(app) -> None:
    client = client_as(app, "admin")
    answer = client.get("/staff/contacts?topic=newsletter&channel=email&decision=perhaps")
    assert answer.status_code == 422
    assert "Unknown decision &#39;perhaps&#39;" in answer.get_data(
        as_text=True
    ) or "Unknown decision 'perhaps'" in answer.get_data(as_text=True)
    assert client.get("/staff/contacts?created_from=2026-02-30").status_code == 422


@pytest.mark.parametrize(
    ("query", "swedish"),
    [
        ("country=XX", "Okänt land &#39;XX&#39;"),
        ("topic=nope", "Okänt ämne &#39;nope&#39;"),
        ("created_from=2026-02-30", "Created from &#39;2026-02-30&#39; är inget datum"),
        ("decision=allowed", "Ett beslutsfilter behöver ett ämne och en kanal"),
        ("after=x", "Sidmarkören är inte giltig"),
    ],
)
def test_a_refusal_reads_in_the_staff_members_language(app, query: str, swedish: str) -> None:
    # The list page's refusals are catalog texts (N_), shown through the catalog
    # on the error page; the API's message stays English.
    client = client_as(app, "admin")
    client.post("/staff/language", data={"lang": "sv", "next": "/staff/contacts"})
    answer = client.get(f"/staff/contacts?{query}")
    assert answer.status_code in (400, 422)
    page = answer.get_data(as_text=True)
    assert swedish in page
    assert '<p lang="en">' not in page


def test_the_export_refuses_an_unknown_format_in_swedish(app) -> None:
    client = client_as(app, "admin")
    client.post("/staff/language", data={"lang": "sv", "next": "/staff/contacts"})
    answer = client.get("/staff/contacts/export.csv?format=pdf")
    assert answer.status_code == 422
    assert "Formatet måste vara csv eller excel." in answer.get_data(as_text=True)


def test_the_decision_column_names_each_contacts_reason(app) -> None:
    listed = _listed(app, 1)
    plain = _contacts(app, 1, country="DE")
    client = client_as(app, "marketing")
    html = client.get("/staff/contacts?topic=events&channel=email").get_data(as_text=True)
    assert "Allowed: industry list" in html and "Not allowed: no basis" in html
    html = client.get("/staff/contacts?topic=events&channel=email&decision=industry_list").get_data(
        as_text=True
    )
    assert _ids_on(html) == listed and plain[0] not in _ids_on(html)


def test_the_list_is_audited_with_its_filter(app) -> None:
    _contacts(app, 2, country="SE")
    client_as(app, "marketing").get("/staff/contacts?country=SE")
    (entry,) = _audit(app, "contact.list")
    assert "country=SE" in (entry.detail or "") and "rows=2" in (entry.detail or "")


@pytest.mark.parametrize("role", ["sales", "dpo"])
def test_roles_without_need_to_know_are_refused_the_list(app, role: str) -> None:
    assert client_as(app, role).get("/staff/contacts").status_code == 403


# The export ---------------------------------------------------------------------


def test_the_export_holds_the_filtered_contacts(app) -> None:
    se = _contacts(app, 3, country="SE")
    _contacts(app, 2, country="NO")
    answer = client_as(app, "admin").get("/staff/contacts/export.csv?country=SE")
    assert answer.status_code == 200 and answer.mimetype == "text/csv"
    lines = answer.get_data(as_text=True).split("\r\n")
    assert lines[0].startswith("id,email,name,company,country")
    assert [int(line.split(",")[0]) for line in lines[1:] if line] == se


def test_the_excel_export_uses_semicolons_and_a_byte_order_mark(app) -> None:
    _contacts(app, 1, country="SE")
    body = client_as(app, "admin").get("/staff/contacts/export.csv?format=excel").get_data()
    assert body.startswith("\ufeff".encode()) and b"id;email;name;" in body
    plain = (
        client_as(app, "admin", email="b@staff.example")
        .get("/staff/contacts/export.csv")
        .get_data()
    )
    assert not plain.startswith("\ufeff".encode())


def test_the_export_never_writes_a_formula(app) -> None:
    with app.app_context():
        db.session.add(
            Contact(
                email="f@example.se",
                name='=HYPERLINK("http://evil","x")',
                company=Company(name="+1;@SUM(A1)"),
            )
        )
        db.session.commit()
        db.session.remove()
    for fmt in ("csv", "excel"):
        text = (
            client_as(app, "admin", email=f"{fmt}@staff.example")
            .get(f"/staff/contacts/export.csv?format={fmt}")
            .get_data(as_text=True)
        )
        assert "'=HYPERLINK" in text and "'+1" in text and "'@SUM" in text
        assert not re.search(r'(^|[,;])"?[=+@-]', text.split("\r\n")[1])


def test_the_export_is_audited_with_filter_and_rows(app) -> None:
    _contacts(app, 3, country="SE")
    client_as(app, "admin").get("/staff/contacts/export.csv?country=SE").get_data()
    started, ended = _audit(app, "contact.list_export")
    assert started.actor.startswith("user:") and ended.actor == started.actor
    assert "country=SE" in (started.detail or "") and "(started)" in (started.detail or "")
    assert "country=SE" in (ended.detail or "") and "rows=3 (complete)" in (ended.detail or "")


def test_the_export_is_audited_before_its_first_line_leaves(app) -> None:
    """A worker killed mid-download must not leak rows unaudited: the first
    chunk of the stream already has a committed audit row behind it."""
    _contacts(app, 3, country="SE")
    response = client_as(app, "admin").get("/staff/contacts/export.csv?country=SE", buffered=False)
    first = next(iter(response.response))
    assert first  # the header has left
    (entry,) = _audit(app, "contact.list_export")
    assert entry.actor.startswith("user:")
    assert "country=SE" in (entry.detail or "") and "(started)" in (entry.detail or "")
    response.close()


def test_the_export_reads_a_chunk_at_a_time_without_gaps(app, monkeypatch) -> None:
    monkeypatch.setattr(contact_list, "EXPORT_CHUNK", 2)
    ids = _contacts(app, 5, country="SE")
    text = client_as(app, "admin").get("/staff/contacts/export.csv").get_data(as_text=True)
    assert [int(line.split(",")[0]) for line in text.split("\r\n")[1:] if line] == ids


def test_an_export_cut_off_is_audited_with_the_rows_written(app) -> None:
    _contacts(app, 3, country="SE")
    with app.test_request_context():
        lines = contact_list.export_lines(ACTOR, contact_list.ContactFilter(), datetime.now(UTC))
        next(lines), next(lines)  # the header and one row, then the download stops
        lines.close()
    _, ended = _audit(app, "contact.list_export")
    assert "rows=1 (cut off)" in (ended.detail or "")


@pytest.mark.parametrize("role", ["marketing", "sales", "dpo"])
def test_roles_that_may_not_export_are_refused(app, role: str) -> None:
    assert client_as(app, role).get("/staff/contacts/export.csv").status_code == 403
    assert _audit(app, "contact.list_export") == []


def test_a_bad_format_is_refused(app) -> None:
    assert client_as(app, "admin").get("/staff/contacts/export.csv?format=xlsx").status_code == 422


# Bulk actions ---------------------------------------------------------------------


def _confirm(client: Any, query: str) -> dict[str, str]:
    page = client.get(f"/staff/contacts/bulk?{query}")
    assert page.status_code == 200, page.get_data(as_text=True)
    html = page.get_data(as_text=True)
    return dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', html))


def test_the_confirmation_says_how_many_contacts_change(app) -> None:
    _listed(app, 3)
    _contacts(app, 2, country="NO")
    client = client_as(app, "admin")
    html = client.get("/staff/contacts/bulk?action=end_industry_list").get_data(as_text=True)
    assert "This changes 3 contacts" in html


def test_ending_the_list_basis_runs_in_the_worker_and_audits_each_contact(
    app, import_worker
) -> None:
    listed = _listed(app, 3)
    client = client_as(app, "admin")
    form = _confirm(client, "action=end_industry_list&country=SE")
    answer = client.post("/staff/contacts/bulk", data=form)
    assert answer.status_code == 303
    import_worker()
    run_page = client.get(answer.headers["Location"]).get_data(as_text=True)
    assert "3 / 3" in run_page
    with app.app_context():
        held = db.session.scalars(
            sa.select(PermissionState.contact_id).where(
                PermissionState.industry_list_since.is_not(None)
            )
        ).all()
        assert held == []
        run = db.session.scalars(sa.select(BulkAction)).one()
        assert (run.status, run.changed) == ("done", 3)
        db.session.remove()
    assert sorted(e.contact_id for e in _audit(app, "contact.basis_ended")) == listed


def test_set_and_lift_a_legal_hold_on_the_filtered_set(app, import_worker) -> None:
    ids = _contacts(app, 2, country="FI")
    _contacts(app, 1, country="NO")
    client = client_as(app, "admin")
    form = _confirm(client, "action=set_legal_hold&country=FI")
    assert (
        client.post("/staff/contacts/bulk", data={**form, "reason": "Tax audit 2026"}).status_code
        == 303
    )
    import_worker()
    with app.app_context():
        holds = dict(db.session.execute(sa.select(Contact.id, Contact.legal_hold_reason)).all())
        db.session.remove()
    assert [holds[i] for i in ids] == ["Tax audit 2026"] * 2 and list(holds.values()).count(
        None
    ) == 1
    assert sorted(e.contact_id for e in _audit(app, "contact.legal_hold.set")) == ids
    form = _confirm(client, "action=lift_legal_hold")
    assert form["confirmed"] == "2"
    assert client.post("/staff/contacts/bulk", data=form).status_code == 303
    import_worker()
    assert sorted(e.contact_id for e in _audit(app, "contact.legal_hold.lift")) == ids


def test_a_legal_hold_without_reason_writes_nothing(app, import_worker) -> None:
    _contacts(app, 2, country="FI")
    client = client_as(app, "admin")
    form = _confirm(client, "action=set_legal_hold&country=FI")
    answer = client.post("/staff/contacts/bulk", data={**form, "reason": "  "})
    assert answer.status_code == 422 and "needs its reason" in answer.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(BulkAction)) == 0
        assert (
            db.session.scalar(
                sa.select(sa.func.count()).where(Contact.legal_hold_reason.is_not(None))
            )
            == 0
        )
        db.session.remove()


def test_a_list_that_changed_since_the_confirmation_is_refused(app, import_worker) -> None:
    _contacts(app, 2, country="FI")
    client = client_as(app, "admin")
    form = _confirm(client, "action=set_legal_hold&country=FI")
    _contacts(app, 1, country="FI")
    answer = client.post("/staff/contacts/bulk", data={**form, "reason": "x"})
    assert answer.status_code == 409 and "now reaches 3 contacts, not 2" in answer.get_data(
        as_text=True
    )
    assert _audit(app, "contact.legal_hold.set") == []


def test_a_bulk_action_needs_the_csrf_token(app, monkeypatch) -> None:
    _contacts(app, 1, country="FI")
    client = client_as(app, "admin")
    form = _confirm(client, "action=set_legal_hold&country=FI")
    form.pop("csrf_token")
    monkeypatch.setitem(app.config, "WTF_CSRF_ENABLED", True)
    answer = client.post("/staff/contacts/bulk", data={**form, "reason": "x"})
    assert answer.status_code == 400
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(BulkAction)) == 0
        db.session.remove()


@pytest.mark.parametrize("role", ["sales", "marketing", "dpo"])
def test_only_the_admin_takes_bulk_actions(app, role: str) -> None:
    _contacts(app, 1, country="FI")
    client = client_as(app, role)
    assert client.get("/staff/contacts/bulk?action=set_legal_hold").status_code == 403
    answer = client.post(
        "/staff/contacts/bulk",
        data={
            "action": "set_legal_hold",
            "reason": "x",
            "confirmed": "1",
            "as_of": datetime.now(UTC).isoformat(),
        },
    )
    assert answer.status_code == 403


def test_an_unknown_bulk_action_is_refused(app) -> None:
    assert (
        client_as(app, "admin").get("/staff/contacts/bulk?action=erase_everyone").status_code == 422
    )


def _stored_run(app: Any, action: str, **fields: Any) -> int:
    with app.app_context():
        run = BulkAction(
            action=action,
            filter={"country": "FI"},
            as_of=datetime.now(UTC),
            reason="Tax audit 2026",
            actor="cli:test",
            **fields,
        )
        db.session.add(run)
        db.session.commit()
        run_id = run.id
        db.session.remove()
    return run_id


def _run(app: Any, run_id: int) -> BulkAction:
    with app.app_context():
        bulk_actions.run_bulk_action(run_id)
        run = db.session.get(BulkAction, run_id)
        assert run is not None
        db.session.expunge(run)
        db.session.remove()
    return run


def test_a_second_delivery_leaves_a_live_run_alone_and_resumes_a_dead_ones(app) -> None:
    ids = _contacts(app, 2, country="FI")
    now = datetime.now(UTC)
    alive = _stored_run(app, "set_legal_hold", total=2, status="running", claimed_at=now)
    run = _run(app, alive)
    assert (run.status, run.done) == ("running", 0)
    assert _audit(app, "contact.legal_hold.set") == []
    # The worker died: once its lease runs out, a delivery takes the run over.
    dead = _stored_run(
        app,
        "set_legal_hold",
        total=2,
        status="running",
        claimed_at=now - bulk_actions.LEASE - timedelta(seconds=1),
    )
    run = _run(app, dead)
    assert (run.status, run.done, run.changed) == ("done", 2, 2)
    assert sorted(e.contact_id for e in _audit(app, "contact.legal_hold.set")) == ids


def test_the_sweeper_hands_over_again_the_runs_whose_job_was_lost(app, import_worker) -> None:
    """A Redis restarted empty, or a worker dead after its message was lost:
    the run's row, not the broker, says what is owed (``flask outbox sweep``,
    and the scheduler's sweeper)."""
    from mailing.outbox import sweep_all

    ids = _contacts(app, 2, country="FI")
    now = datetime.now(UTC)
    old = now - bulk_actions.LEASE - timedelta(seconds=1)
    lost_queued = _stored_run(app, "set_legal_hold", total=2, created_at=old)
    young = _stored_run(app, "set_legal_hold", total=2)
    alive = _stored_run(app, "set_legal_hold", total=2, status="running", claimed_at=now)
    with app.app_context():
        # Not one job in the broker: each message was lost.
        swept = sweep_all()
        db.session.remove()
    assert swept.bulk_actions == [lost_queued]
    import_worker()
    runs = {r: _run_row(app, r) for r in (lost_queued, young, alive)}
    assert (runs[lost_queued].status, runs[lost_queued].changed) == ("done", 2)
    assert (runs[young].status, runs[alive].status) == ("queued", "running")
    assert sorted(e.contact_id for e in _audit(app, "contact.legal_hold.set")) == ids
    # Handed over at most once per lease while it waits: a second sweep leaves it.
    with app.app_context():
        assert bulk_actions.resend_lost_runs() == []
        # Waiting behind a long job, handed over again after 1.8 leases: not
        # again 1.2 leases later (it waits as long again as it had), 1.8 later it is.
        lease = bulk_actions.LEASE
        for created, last, again in [(3.0, 1.2, False), (3.6, 1.8, True)]:
            db.session.execute(
                sa.update(BulkAction)
                .where(BulkAction.id == young)
                .values(created_at=now - created * lease, claimed_at=now - last * lease)
            )
            db.session.commit()
            assert bulk_actions.resend_lost_runs() == ([young] if again else [])
        db.session.remove()
    import_worker()
    assert _run_row(app, young).status == "done"
    # Its worker died after the broker lost the message: once the lease ran
    # out, it goes back to the queue; and a broker that lost its messages has
    # every queued run handed over at once, one queued a moment ago too.
    just_queued = _stored_run(app, "lift_legal_hold", total=2)
    with app.app_context():
        db.session.execute(
            sa.update(BulkAction).where(BulkAction.id == alive).values(claimed_at=old)
        )
        db.session.commit()
        assert bulk_actions.resend_lost_runs(broker_emptied=True) == [alive, just_queued]
        db.session.remove()
    import_worker()
    assert [_run_row(app, r).status for r in (alive, just_queued)] == ["done", "done"]


def _run_row(app: Any, run_id: int) -> BulkAction:
    with app.app_context():
        run = db.session.get(BulkAction, run_id)
        assert run is not None
        db.session.expunge(run)
        db.session.remove()
    return run


def test_a_failed_run_stores_and_logs_the_errors_type_not_its_data(
    app, monkeypatch, caplog
) -> None:
    _contacts(app, 1, country="FI")

    def failing(run: Any, actor: Any) -> Any:
        def change(rows: list[tuple[int, str]]) -> int:
            raise sa.exc.IntegrityError(
                "UPDATE contact SET email=?", {"email": rows[0][1]}, Exception("unique")
            )

        return change

    monkeypatch.setattr(bulk_actions, "_changes", failing)
    run = _run(app, _stored_run(app, "set_legal_hold", total=1))
    assert run.status == "failed" and run.error is not None
    assert run.error.startswith("IntegrityError") and "@" not in run.error
    assert "@" not in caplog.text and "IntegrityError" in caplog.text


def test_a_run_the_broker_refused_is_gone_and_the_refusal_audited(app, monkeypatch) -> None:
    _contacts(app, 2, country="FI")
    client = client_as(app, "admin")
    form = _confirm(client, "action=set_legal_hold&country=FI")

    def broker_down(*args: Any) -> None:
        raise ConnectionError("broker down")

    monkeypatch.setattr(bulk_actions, "send_job", broker_down)
    answer = client.post("/staff/contacts/bulk", data={**form, "reason": "x"})
    assert answer.status_code == 503
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(BulkAction)) == 0
        db.session.remove()
    asked, refused = _audit(app, "contact.bulk.set_legal_hold")
    assert "refused" not in (asked.detail or "")
    assert "refused: broker unavailable" in (refused.detail or "")
