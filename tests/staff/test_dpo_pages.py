"""The DPO's view: the home page, the audit log's filters, paging and export, and
the records of processing generated from the policy file."""

from __future__ import annotations

import csv
import io
import tomllib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from consent.topics import MarketingPolicy
from crm import audit_log
from crm.models import AuditEntry
from crm.retention.rules import RetentionPolicy
from extensions import db
from tests.staff.helpers import client_as, make_user, sign_in

DEFAULT_POLICY = Path(__file__).resolve().parents[2] / "consent" / "default_policy.toml"


def _log(app: Any, *entries: tuple[str, str, int | None, str, str | None]) -> None:
    """Audit entries as (at, actor, contact_id, action, detail), written directly:
    the log's own writer stamps the present time, and the filters need others."""
    with app.app_context():
        for at, actor, contact_id, action, detail in entries:
            db.session.add(
                AuditEntry(
                    at=datetime.fromisoformat(at).replace(tzinfo=UTC),
                    actor=actor,
                    action=action,
                    contact_id=contact_id,
                    detail=detail,
                )
            )
        db.session.commit()
        db.session.remove()


def _rows(page: str) -> list[str]:
    """The actions of the table's rows, in order."""
    body = page.split("<tbody>", 1)[1].split("</tbody>", 1)[0] if "<tbody>" in page else ""
    return [chunk.split("</code>", 1)[0] for chunk in body.split("<code>")[1:]]


@pytest.fixture
def logged(app: Any) -> None:
    _log(
        app,
        ("2026-03-01T09:00:00", "user:sara@staff.example", 7, "contact.read", None),
        ("2026-03-02T09:00:00", "user:sara@staff.example", 8, "contact.update", "name"),
        ("2026-03-03T09:00:00", "token:crm-sync", 7, "contact.update", "email"),
        ("2026-03-04T23:59:00", "cli:root", None, "retention.run", "rule=crm-contacts"),
        ("2026-03-05T00:00:00", "user:olle@staff.example", 9, "contact.erase", None),
    )


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ({"who": "sara@"}, ["contact.update", "contact.read"]),
        ({"who": "cli:"}, ["retention.run"]),
        ({"action": "contact.update"}, ["contact.update", "contact.update"]),
        (
            {"action": "contact."},
            ["contact.erase", "contact.update", "contact.update", "contact.read"],
        ),
        ({"contact": "7"}, ["contact.update", "contact.read"]),
        ({"from": "2026-03-03", "to": "2026-03-04"}, ["retention.run", "contact.update"]),
        ({"to": "2026-03-01"}, ["contact.read"]),
        ({"who": "sara", "contact": "8", "from": "2026-03-02"}, ["contact.update"]),
        # A percent sign is a character to find, not a wildcard.
        ({"who": "%"}, []),
    ],
)
def test_the_filters_narrow_the_log(app: Any, logged: None, args: dict, expected: list) -> None:
    dpo = client_as(app, "dpo")
    response = dpo.get("/staff/admin/audit", query_string=args)
    assert response.status_code == 200
    assert _rows(response.get_data(as_text=True)) == expected


def test_reading_a_page_logs_the_filter_it_was_read_with(app: Any, logged: None) -> None:
    # R25: who read which part of the log, as the export's entry says it.
    dpo = client_as(app, "dpo")
    assert (
        dpo.get("/staff/admin/audit", query_string={"who": "sara", "contact": "7"}).status_code
        == 200
    )
    with app.app_context():
        read = db.session.execute(
            sa.select(AuditEntry.contact_id, AuditEntry.detail).where(
                AuditEntry.action == "audit.read"
            )
        ).all()
    assert read == [(7, "who=sara contact_id=7 entries=1")]


@pytest.mark.parametrize(
    "args",
    [{"contact": "x"}, {"from": "2026-13-01"}, {"from": "2026-03-05", "to": "2026-03-01"}],
)
def test_a_filter_that_is_not_valid_is_refused_and_writes_nothing(
    app: Any, logged: None, args: dict
) -> None:
    response = client_as(app, "dpo").get("/staff/admin/audit", query_string=args)
    assert response.status_code == 422
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(AuditEntry)) == 5


def test_pages_follow_each_other_by_a_signed_cursor(app: Any, monkeypatch: Any) -> None:
    monkeypatch.setattr(audit_log, "PAGE_SIZE", 3)
    _log(
        app,
        *[
            (f"2026-03-01T09:0{i}:00", "user:a@staff.example", i, f"step.{i}", None)
            for i in range(8)
        ],
    )
    dpo = client_as(app, "dpo")
    seen: list[str] = []
    path = "/staff/admin/audit?who=a@staff"
    for _ in range(5):
        page = dpo.get(path).get_data(as_text=True)
        seen += _rows(page)
        if 'rel="next"' not in page:
            break
        href = page.split('rel="next" href="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
        path = href
        assert "who=a@staff" in href, "the filter travels with the cursor"
    assert seen == [f"step.{i}" for i in reversed(range(8))]


@pytest.mark.parametrize("cursor", ["1", "eyJpZCI6MX0", "x" * 50])
def test_a_tampered_cursor_is_a_bad_request(app: Any, logged: None, cursor: str) -> None:
    with app.test_request_context():
        genuine = audit_log.encode_cursor(3)
    assert client_as(app, "dpo").get(f"/staff/admin/audit?before={genuine}").status_code == 200
    forged = genuine[:-1] + ("A" if genuine[-1] != "A" else "B")
    dpo = client_as(app, "dpo", email="dpo2@staff.example")
    for bad in (cursor, forged):
        response = dpo.get("/staff/admin/audit", query_string={"before": bad})
        assert response.status_code == 400, bad
        assert "changed" in response.get_data(as_text=True)


def test_the_export_is_the_filtered_log_formula_safe_and_is_itself_audited(
    app: Any, logged: None
) -> None:
    _log(
        app, ("2026-03-06T10:00:00", "user:sara@staff.example", 7, "contact.read", "=HYPERLINK(1)")
    )
    dpo = client_as(app, "dpo")
    response = dpo.get("/staff/admin/audit.csv", query_string={"contact": "7", "delimiter": ";"})
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    assert response.is_streamed
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True)), delimiter=";"))
    assert rows[0] == ["id", "at", "actor", "action", "contact_id", "detail"]
    assert [(r[2], r[3], r[5]) for r in rows[1:]] == [
        ("user:sara@staff.example", "contact.read", "'=HYPERLINK(1)"),
        ("token:crm-sync", "contact.update", "email"),
        ("user:sara@staff.example", "contact.read", ""),
    ]
    with app.app_context():
        export = db.session.execute(
            sa.select(AuditEntry.actor, AuditEntry.contact_id, AuditEntry.detail).where(
                AuditEntry.action == "audit.export"
            )
        ).all()
    assert export == [("user:dpo@staff.example", 7, "contact_id=7")]


def test_the_export_reads_past_one_batch(app: Any, monkeypatch: Any) -> None:
    monkeypatch.setattr(audit_log, "EXPORT_BATCH", 2)
    _log(app, *[(f"2026-03-01T09:0{i}:00", "cli:x", None, f"step.{i}", None) for i in range(5)])
    text = client_as(app, "admin").get("/staff/admin/audit.csv?who=cli:x").get_data(as_text=True)
    assert [line.split(",")[3] for line in text.splitlines()[1:]] == [
        f"step.{i}" for i in reversed(range(5))
    ]


@pytest.mark.parametrize("role", ["sales", "marketing"])
def test_other_roles_are_refused_every_dpo_page(app: Any, role: str) -> None:
    client = client_as(app, role)
    for path in (
        "/staff/dpo",
        "/staff/dpo/records",
        "/staff/admin/audit",
        "/staff/admin/audit.csv",
    ):
        assert client.get(path).status_code == 403, path
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(AuditEntry)) == 0


def test_the_dpo_lands_on_their_home_which_links_their_pages(app: Any) -> None:
    make_user(app, "dpo", email="dpo@staff.example")
    response = app.test_client().post(
        "/staff/login", data={"email": "dpo@staff.example", "password": "staff-password-1"}
    )
    assert response.status_code == 303
    assert response.headers["Location"].endswith("/staff/dpo")
    page = client_as(app, "dpo", email="d2@staff.example").get("/staff/dpo").get_data(as_text=True)
    for href in ("/staff/admin/privacy-requests", "/staff/admin/audit", "/staff/dpo/records"):
        assert f'href="{href}"' in page
    # Everyone else still lands on the contact search.
    make_user(app, "sales", email="s@staff.example")
    other = app.test_client().post(
        "/staff/login", data={"email": "s@staff.example", "password": "staff-password-1"}
    )
    assert other.headers["Location"].endswith("/staff/")


def test_the_records_say_what_the_default_policy_says(app: Any) -> None:
    page = client_as(app, "dpo").get("/staff/dpo/records").get_data(as_text=True)
    assert 'id="policy-version">1.0<' in page
    for topic in ("newsletter", "product-updates", "events", "surveys", "web-tracking"):
        assert f'data-topic="{topic}"' in page
    assert 'data-rule="crm-contacts"' in page and 'data-rule="support-cases"' in page
    assert "delete contact 7 years after last_interaction" in page
    assert 'data-recipient="mail"' in page and "files on this server" in page


@pytest.fixture
def policy_file(app: Any, tmp_path: Path) -> Iterator[Any]:
    """Run the app under an edited copy of its policy file, parsed as at start-up."""
    saved = (
        app.config["POLICY"],
        app.config["POLICY_FILE"],
        app.extensions["marketing_policy"],
        app.extensions["retention_policy"],
    )

    def use(text: str) -> None:
        path = tmp_path / "policy.toml"
        path.write_text(text)
        data = tomllib.loads(text)
        app.config["POLICY"], app.config["POLICY_FILE"] = data, str(path)
        app.extensions["marketing_policy"] = MarketingPolicy.from_mapping(data)
        app.extensions["retention_policy"] = RetentionPolicy.from_mapping(data)

    yield use
    (
        app.config["POLICY"],
        app.config["POLICY_FILE"],
        app.extensions["marketing_policy"],
        app.extensions["retention_policy"],
    ) = saved


def test_the_records_change_when_the_policy_file_does(app: Any, policy_file: Any) -> None:
    text = DEFAULT_POLICY.read_text()
    edited = (
        text.replace('policy_version = "1.0"', 'policy_version = "2.7"').replace(
            'years = 7\ncounts_from = "last_interaction"\nround_to_year_end',
            'years = 5\ncounts_from = "last_interaction"\nround_to_year_end',
        )
        + '\n[topics.webinars-2027]\nlabel = { en = "Webinars 2027" }\nbases = ["consent"]\n'
        + '\n[[processors]]\nname = "Hosting Nord AB"\npurpose = "runs the servers"\nwhere = "SE"\n'
    )
    assert edited.count("years = 5") == 1
    policy_file(edited)
    client = client_as(app, "admin")
    page = client.get("/staff/dpo/records").get_data(as_text=True)
    assert 'id="policy-version">2.7<' in page
    assert 'data-topic="webinars-2027"' in page and "Webinars 2027" in page
    assert "delete contact 5 years after last_interaction" in page
    assert "7 years after last_interaction, then" not in page
    assert "Hosting Nord AB" in page and "runs the servers" in page


def test_the_records_name_webhook_receivers_and_the_smtp_host_without_credentials(
    app: Any, monkeypatch: Any
) -> None:
    from consent.models import WebhookEndpoint

    with app.app_context():
        db.session.add(
            WebhookEndpoint(
                url="https://crm.example.com/hooks/consent?k=1", secret="s", description="Our CRM"
            )
        )
        db.session.commit()
        db.session.remove()
    monkeypatch.setitem(app.config, "SMTP_URL", "smtp://user:hunter2@mail.example.net:587")
    page = client_as(app, "dpo").get("/staff/dpo/records").get_data(as_text=True)
    assert "Our CRM" in page and "https://crm.example.com" in page and "k=1" not in page
    assert "smtp://mail.example.net:587" in page
    assert "hunter2" not in page and "user:" not in page


def test_a_signed_in_dpo_reaches_the_records_from_the_navigation(app: Any) -> None:
    user_id = make_user(app, "dpo", email="nav@staff.example")
    client = app.test_client()
    sign_in(client, app, user_id)
    page = client.get("/staff/dpo").get_data(as_text=True)
    assert 'href="/staff/dpo"' in page
